// Drives the OAuth discovery, registration and authorization-request steps of the official MCP
// TypeScript SDK (@modelcontextprotocol/sdk, client/auth.js) against a running mcp-server in
// Cognito mode, as an MCP client does before it sends a person to sign in.
//
//   node ts_oauth.mjs MCP_URL --modules DIR
//
// DIR is the npm prefix the SDK is installed under (DIR/node_modules). The steps:
// discoverOAuthProtectedResourceMetadata(MCP_URL) (RFC 9728), discoverAuthorizationServerMetadata
// of the authorization server it names (RFC 8414; it must offer PKCE S256 and registration),
// registerClient (RFC 7591, a public client: this creates an app client in the user pool), then
// startAuthorization with the resource (RFC 8707) and every scope the resource offers. The
// authorization URL must be the metadata's authorization endpoint with response_type=code, the
// registered client id, the redirect URI, the scope, the resource and an S256 challenge of the
// returned verifier. Prints one JSON line with what it found; exits non-zero on any mismatch,
// and on anything printed through console.warn or console.error or raised as a process warning.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { format, parseArgs } from 'node:util';

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: { modules: { type: 'string' } },
});
const [mcpUrl] = positionals;
if (!mcpUrl || !options.modules) {
  console.log('usage: ts_oauth.mjs MCP_URL --modules DIR');
  process.exit(64);
}

const problems = [];
const print = console.log.bind(console);
for (const level of ['warn', 'error']) {
  console[level] = (...args) => problems.push(`console.${level}: ${format(...args)}`);
}
process.on('warning', (warning) => problems.push(`process warning: ${warning.name}: ${warning.message}`));

const pkg = '@modelcontextprotocol/sdk';
const require = createRequire(join(options.modules, 'package.json'));
const { version } = JSON.parse(readFileSync(join(options.modules, 'node_modules', pkg, 'package.json'), 'utf8'));
const {
  discoverOAuthProtectedResourceMetadata,
  discoverAuthorizationServerMetadata,
  registerClient,
  startAuthorization,
} = require(`${pkg}/client/auth.js`);

const redirectUrl = 'http://localhost:33418/callback';

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function same(actual, expected, what) {
  check(
    JSON.stringify(actual) === JSON.stringify(expected),
    `${what}: ${JSON.stringify(actual)}, expected ${JSON.stringify(expected)}`,
  );
}

async function run() {
  const resourceMetadata = await discoverOAuthProtectedResourceMetadata(mcpUrl);
  same(resourceMetadata.resource, mcpUrl, 'resource metadata: resource');
  check(resourceMetadata.authorization_servers?.length === 1, 'resource metadata names one authorization server');
  const [issuer] = resourceMetadata.authorization_servers;
  const scopes = resourceMetadata.scopes_supported ?? [];
  same(scopes.map((scope) => scope.slice(mcpUrl.length + 1)), ['mcp:read', 'mcp:call', 'mcp:write'], 'scopes_supported');
  check(scopes.every((scope) => scope.startsWith(`${mcpUrl}/`)), `scopes are not prefixed with ${mcpUrl}/`);

  const metadata = await discoverAuthorizationServerMetadata(issuer);
  check(metadata, `no authorization server metadata at ${issuer}`);
  same(metadata.issuer, issuer, 'authorization server metadata: issuer');
  check(metadata.code_challenge_methods_supported?.includes('S256'), 'S256 is not offered');
  same(metadata.registration_endpoint, `${issuer}/register`, 'registration_endpoint');
  same(metadata.scopes_supported, scopes, 'authorization server scopes_supported');

  const clientMetadata = {
    redirect_uris: [redirectUrl],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    client_name: 'ts-sdk-test',
  };
  const clientInformation = await registerClient(issuer, { metadata, clientMetadata });
  check(typeof clientInformation.client_id === 'string' && clientInformation.client_id, 'no client_id');
  check(clientInformation.client_secret === undefined, 'a public client got a secret');
  same(clientInformation.redirect_uris, [redirectUrl], 'registered redirect_uris');
  same(clientInformation.token_endpoint_auth_method, 'none', 'registered token_endpoint_auth_method');
  same(clientInformation.scope, scopes.join(' '), 'registered scope');

  const scope = scopes.join(' ');
  const { authorizationUrl, codeVerifier } = await startAuthorization(issuer, {
    metadata,
    clientInformation,
    redirectUrl,
    scope,
    resource: new URL(mcpUrl),
  });
  same(`${authorizationUrl.origin}${authorizationUrl.pathname}`, metadata.authorization_endpoint, 'authorization endpoint');
  check(metadata.authorization_endpoint.endsWith('/oauth2/authorize'), 'not the pool domain\'s /oauth2/authorize');
  const params = Object.fromEntries(authorizationUrl.searchParams);
  const challenge = createHash('sha256').update(codeVerifier).digest('base64url');
  same(params, {
    response_type: 'code',
    client_id: clientInformation.client_id,
    code_challenge: challenge,
    code_challenge_method: 'S256',
    redirect_uri: redirectUrl,
    scope,
    resource: mcpUrl,
  }, 'authorization request');

  return {
    sdk: version,
    issuer,
    authorization_endpoint: metadata.authorization_endpoint,
    code_challenge_methods_supported: metadata.code_challenge_methods_supported,
    registration_endpoint: metadata.registration_endpoint,
    client_id: clientInformation.client_id,
    authorization_url: authorizationUrl.href,
    authorization_params: params,
    code_verifier: codeVerifier,
  };
}

let result;
try {
  result = await run();
} catch (error) {
  problems.push(`failed: ${error?.stack ?? error}`);
}
// Warnings raised while the last answers are handled arrive on later ticks.
await new Promise((resolve) => setTimeout(resolve, 100));
if (problems.length > 0) {
  print(`FAILED @modelcontextprotocol/sdk ${version} OAuth: ${problems.length} problem(s)`);
  for (const problem of problems) print(`  ${problem}`);
  process.exit(1);
}
print(JSON.stringify(result));
