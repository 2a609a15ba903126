#!/usr/bin/env python3
"""Lambda's asynchronous Invoke in front of one `cargo lambda watch` emulator.

Why it exists: the function starts a task's run by invoking itself with
`InvocationType=Event`. `cargo lambda watch` (1.9.2) serves the Invoke API but ignores
`X-Amz-Invocation-Type`: it answers only once the function answers, which for a task run
is when the run has ended, and a caller that leaves early breaks the function's response.
So the invoking request would wait for the whole run, and an emulator with one instance
would wait for itself forever. Lambda instead queues the event and answers 202 at once;
this shim does the same: it answers 202, then sends the invocation to the emulator as a
synchronous one from a background thread and reads its answer to the end.
Other invocation types are relayed synchronously. Nothing else is served (404).
"""

import argparse
import http.client
import json
import re
import sys
import threading
import time
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

INVOKE_PATH = re.compile(r"^/2015-03-31/functions/([^/?]+)/invocations(\?.*)?$")
FORWARDED_HEADERS = ("Content-Type", "X-Amz-Client-Context", "X-Amz-Log-Type", "X-Amzn-Trace-Id")
RELAYED_HEADERS = ("Content-Type", "X-Amz-Function-Error", "X-Amz-Log-Result", "X-Amz-Executed-Version")


def log(message):
    print(f"{time.strftime('%H:%M:%S')} async-invoke: {message}", file=sys.stderr, flush=True)


def make_handler(target, timeout):
    """A request handler class that invokes functions at `target` (host, port, base path)."""
    host, port, base = target

    def invoke(path, body, headers):
        """Sends one synchronous invocation; returns (status, headers, body) once it has ended."""
        connection = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            connection.request("POST", base + path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.getheaders(), response.read()
        finally:
            connection.close()

    def invoke_in_background(function, path, body, headers):
        started = time.monotonic()
        try:
            status, _, answer = invoke(path, body, headers)
            elapsed = time.monotonic() - started
            log(f"{function}: Event run answered {status} ({len(answer)} bytes) after {elapsed:.2f}s")
        except Exception as error:  # a failed run is logged, never raised: nobody waits for it
            log(f"{function}: Event run failed after {time.monotonic() - started:.2f}s: {error!r}")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            match = INVOKE_PATH.match(self.path)
            if not match:
                self.not_found()
                return
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                self.error(411, "send the payload with a Content-Length", "LengthRequiredException")
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            function = urllib.parse.unquote(match.group(1))
            headers = {name: self.headers[name] for name in FORWARDED_HEADERS if name in self.headers}
            headers["X-Amz-Invocation-Type"] = "RequestResponse"
            if self.headers.get("X-Amz-Invocation-Type", "RequestResponse") == "Event":
                self.answer(202, b"")
                threading.Thread(
                    target=invoke_in_background, args=(function, self.path, body, headers), daemon=True
                ).start()
                return
            started = time.monotonic()
            try:
                status, answer_headers, answer = invoke(self.path, body, headers)
            except Exception as error:
                log(f"{function}: RequestResponse failed after {time.monotonic() - started:.2f}s: {error!r}")
                self.error(502, f"the emulator did not answer: {error}", "ServiceException")
                return
            log(f"{function}: RequestResponse answered {status} after {time.monotonic() - started:.2f}s")
            relayed = {name: value for name, value in answer_headers if name.title() in RELAYED_HEADERS}
            self.answer(status, answer, relayed)

        def not_found(self):
            message = f"no such operation: {self.command} {self.path} (only Invoke is served)"
            self.error(404, message, "UnknownOperationException")

        do_GET = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = not_found

        def error(self, status, message, error_type):
            self.close_connection = True  # a refused request's body may be unread
            body = json.dumps({"Type": "User" if status < 500 else "Service", "message": message}).encode()
            self.answer(status, body, {"Content-Type": "application/json", "X-Amzn-ErrorType": error_type})

        def answer(self, status, body, headers=None):
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("X-Amzn-RequestId", str(uuid.uuid4()))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_request(self, code="-", size="-"):  # one line per invocation is logged above
            pass

    return Handler


def address(value):
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


def target_url(value):
    url = urllib.parse.urlsplit(value)
    if url.scheme != "http" or not url.hostname or not url.port:
        raise argparse.ArgumentTypeError(f"expected http://HOST:PORT[/PATH], got {value!r}")
    return url.hostname, url.port, url.path.rstrip("/")


def main():
    parser = argparse.ArgumentParser(
        description="Answers Lambda Invoke calls with InvocationType=Event with 202 at once and runs them "
        "against a `cargo lambda watch` emulator in the background (which itself ignores the invocation "
        "type); other invocations are relayed synchronously.",
        epilog="Point the function's SDK at it with AWS_ENDPOINT_URL_LAMBDA=http://LISTEN.",
    )
    parser.add_argument("--listen", type=address, required=True, metavar="HOST:PORT", help="where to listen")
    parser.add_argument("--target", type=target_url, required=True, metavar="URL",
                        help="the emulator's invoke address, e.g. http://127.0.0.1:9000")
    parser.add_argument("--timeout", type=float, default=960, metavar="SECONDS",
                        help="how long one invocation may take (default: 960, past Lambda's 900 s cap)")
    args = parser.parse_args()
    server = ThreadingHTTPServer(args.listen, make_handler(args.target, args.timeout))
    host, port, base = args.target
    log(f"listening on {args.listen[0]}:{args.listen[1]}, invoking http://{host}:{port}{base}")
    server.serve_forever()


if __name__ == "__main__":
    main()
