// Drives a running mcp-server with an official MCP TypeScript SDK client, on one wire.
//
//   node ts_client.mjs URL --modules DIR --sdk 1|2 --wire legacy|modern
//
// DIR is the npm prefix the SDKs are installed under (DIR/node_modules). `--sdk 1` is
// @modelcontextprotocol/sdk (1.x, the 2025-11-25 session wire only); `--sdk 2` is
// @modelcontextprotocol/client (2.x), which also speaks the 2026-07-28 stateless wire
// (`--wire modern`: it probes with server/discover). The bearer token comes from
// MCP_INTEROP_AUTHORIZATION (the whole header value), never from the command line.
//
// The client connects, lists tools (which compiles every output schema with Ajv), calls
// echo, writes, reads and deletes a document with the state tools (each structured result
// is checked against its output schema), lists resources and prompts, ends the session
// (DELETE on the session wire) and closes. Anything printed through console.warn or
// console.error, any process warning and any failed step fail the run. Prints one
// summary line; exits 0 only when the run was clean.

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { format, parseArgs } from 'node:util';

const { values: options, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    modules: { type: 'string' },
    sdk: { type: 'string', default: '1' },
    wire: { type: 'string', default: 'legacy' },
  },
});
const [url] = positionals;
const expectedVersion = { legacy: '2025-11-25', modern: '2026-07-28' }[options.wire];
if (!url || !options.modules || !['1', '2'].includes(options.sdk) || !expectedVersion) {
  console.log('usage: ts_client.mjs URL --modules DIR --sdk 1|2 --wire legacy|modern');
  process.exit(64);
}
if (options.sdk === '1' && options.wire !== 'legacy') {
  console.log('@modelcontextprotocol/sdk 1.x speaks the legacy wire only');
  process.exit(64);
}

// Everything the SDK reports goes here instead of the terminal.
const problems = [];
const print = console.log.bind(console);
for (const level of ['warn', 'error']) {
  console[level] = (...args) => problems.push(`console.${level}: ${format(...args)}`);
}
process.on('warning', (warning) => problems.push(`process warning: ${warning.name}: ${warning.message}`));

const pkg = options.sdk === '1' ? '@modelcontextprotocol/sdk' : '@modelcontextprotocol/client';
const require = createRequire(join(options.modules, 'package.json'));
const { version } = JSON.parse(readFileSync(join(options.modules, 'node_modules', pkg, 'package.json'), 'utf8'));
const { Client, StreamableHTTPClientTransport } =
  options.sdk === '1'
    ? {
        ...require('@modelcontextprotocol/sdk/client/index.js'),
        ...require('@modelcontextprotocol/sdk/client/streamableHttp.js'),
      }
    : require('@modelcontextprotocol/client');
const label = `typescript ${pkg} ${version} ${options.wire}`;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

function structured(result, tool) {
  const text = (result.content ?? []).map((block) => block.text ?? '').join(' ');
  check(!result.isError, `${tool} failed: ${text}`);
  check(result.structuredContent && typeof result.structuredContent === 'object', `${tool}: no structured content`);
  return result.structuredContent;
}

async function session(steps) {
  const headers = {};
  if (process.env.MCP_INTEROP_AUTHORIZATION) headers.Authorization = process.env.MCP_INTEROP_AUTHORIZATION;
  const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
  const clientOptions = { capabilities: {} };
  if (options.sdk === '2') clientOptions.versionNegotiation = { mode: options.wire === 'modern' ? 'auto' : 'legacy' };
  const client = new Client({ name: 'interop-ts', version: '1.0.0' }, clientOptions);
  await client.connect(transport);
  const negotiated =
    options.sdk === '1' ? transport.protocolVersion : client.getNegotiatedProtocolVersion();
  check(negotiated === expectedVersion, `negotiated ${negotiated}, expected ${expectedVersion}`);
  check((options.wire === 'legacy') === Boolean(transport.sessionId), `session id ${transport.sessionId}`);
  steps.push(`connect (${negotiated})`);

  const { tools } = await client.listTools();
  const names = new Set(tools.map((tool) => tool.name));
  for (const name of ['echo', 'state_set', 'state_get', 'state_delete']) check(names.has(name), `tools/list lacks ${name}`);
  steps.push(`tools/list (${tools.length} tools)`);

  const echoed = structured(await client.callTool({ name: 'echo', arguments: { message: 'interop' } }), 'echo');
  check(echoed.message === 'interop', `echo answered ${JSON.stringify(echoed)}`);
  steps.push('echo');

  const key = `interop/ts${options.sdk}-${options.wire}-${Math.random().toString(16).slice(2, 10)}`;
  const call = async (name, args) => structured(await client.callTool({ name, arguments: args }), name);
  const written = await call('state_set', { key, value: { n: 1 }, expected_version: 0 });
  check(written.version === 1, `state_set answered ${JSON.stringify(written)}`);
  const read = await call('state_get', { key });
  check(read.version === 1 && read.value?.n === 1, `state_get answered ${JSON.stringify(read)}`);
  const deleted = await call('state_delete', { key, expected_version: 1 });
  check(deleted.deleted === true, `state_delete answered ${JSON.stringify(deleted)}`);
  steps.push('state_set/state_get/state_delete');

  const { resources } = await client.listResources();
  steps.push(`resources/list (${resources.length})`);
  const { prompts } = await client.listPrompts();
  check(prompts.length > 0, 'prompts/list is empty');
  steps.push(`prompts/list (${prompts.length})`);

  if (transport.sessionId) {
    await transport.terminateSession();
    check(!transport.sessionId, 'the session id outlived DELETE');
    steps.push('DELETE');
  }
  await client.close();
  steps.push('close');
}

const steps = [];
let failure;
const timer = setTimeout(() => {
  print(`FAILED ${label}: no answer within 60 s after ${steps.join(', ') || 'no step'}`);
  process.exit(1);
}, 60_000);
try {
  await session(steps);
} catch (error) {
  failure = `failed after ${steps.join(', ') || 'no step'}: ${error?.stack ?? error}`;
}
clearTimeout(timer);
// Warnings raised while the last answers are being handled arrive on later ticks.
await new Promise((resolve) => setTimeout(resolve, 100));
if (failure) problems.push(failure);
if (problems.length > 0) {
  print(`FAILED ${label}: ${problems.length} problem(s)`);
  for (const problem of problems) print(`  ${problem}`);
  process.exit(1);
}
print(`ok ${label}: ${steps.join(', ')}; no warnings`);
