-- wrk script for the legacy-session run: every request a tools/call echo in one session with
-- its own JSON-RPC id (requests sharing an id in one session are a client error that leaves one
-- of them unanswered), then one JSON line of results on stdout.
--   wrk -t T -c C -d 5s -s bench/legacy_session.lua URL -- SESSION_ID [AUTHORIZATION]

local threads = {}

function setup(thread)
  thread:set("thread_id", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = 0
  wrk.method = "POST"
  wrk.headers["content-type"] = "application/json"
  wrk.headers["accept"] = "application/json, text/event-stream"
  wrk.headers["mcp-protocol-version"] = "2025-11-25"
  wrk.headers["mcp-session-id"] = args[1]
  if args[2] then wrk.headers["authorization"] = args[2] end
end

function request()
  counter = counter + 1
  local id = thread_id * 1000000000 + counter
  local body = '{"jsonrpc":"2.0","id":' .. id ..
    ',"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}'
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local failed = summary.errors.status + summary.errors.connect + summary.errors.read +
    summary.errors.write + summary.errors.timeout
  io.write(string.format(
    '{"requests":%d,"failed":%d,"rps":%.1f,"p50":%.3f,"p95":%.3f,"p99":%.3f}\n',
    summary.requests, failed, summary.requests / seconds,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
