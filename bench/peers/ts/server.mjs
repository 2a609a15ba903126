// Echo peer on the official TypeScript SDK, shaped like the SDK's
// simpleStatelessStreamableHttp example so a benchmark measures the SDK.
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import * as z from 'zod/v4';

const getServer = () => {
    const server = new McpServer({ name: 'echo-peer-ts', version: '1.0.0' });
    server.registerTool(
        'echo',
        {
            description: 'Echo the message back',
            inputSchema: { message: z.string() },
            outputSchema: { message: z.string() }
        },
        async ({ message }) => ({
            content: [{ type: 'text', text: message }],
            structuredContent: { message }
        })
    );
    return server;
};

const app = createMcpExpressApp();

// Stateless mode: a stateless transport must not be reused across requests,
// so each POST gets its own server and transport, as in the SDK's example.
app.post('/mcp', async (req, res) => {
    const server = getServer();
    try {
        const transport = new StreamableHTTPServerTransport({
            sessionIdGenerator: undefined,
            enableJsonResponse: true
        });
        res.on('close', () => {
            transport.close();
            server.close();
        });
        await server.connect(transport);
        await transport.handleRequest(req, res, req.body);
    } catch (error) {
        console.error('Error handling MCP request:', error);
        if (!res.headersSent) {
            res.status(500).json({
                jsonrpc: '2.0',
                error: { code: -32603, message: 'Internal server error' },
                id: null
            });
        }
    }
});

// Nothing to stream or resume without sessions, so GET and DELETE get 405,
// as the spec allows and the SDK's example does.
const methodNotAllowed = (req, res) => {
    res.status(405).json({
        jsonrpc: '2.0',
        error: { code: -32000, message: 'Method not allowed.' },
        id: null
    });
};
app.get('/mcp', methodNotAllowed);
app.delete('/mcp', methodNotAllowed);

const PORT = Number(process.env.PORT ?? 3000);
app.listen(PORT, '127.0.0.1', error => {
    if (error) {
        console.error('Failed to start server:', error);
        process.exit(1);
    }
});
