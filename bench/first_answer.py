"""Starts a server and times process start to its first answered MCP call (the cold-start proxy).

    python3 bench/first_answer.py --url URL --body JSON [--header 'name: value']... [--log FILE] -- COMMAND...

Polls with the given POST every millisecond from the moment the process is spawned; prints
"<pid> <milliseconds>" once it answers 200 and leaves the server running (the caller stops it).
Exits 1 if the server exits or does not answer within 30 s.
"""

import argparse
import http.client
import subprocess
import sys
import time
import urllib.parse


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--body", required=True)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--log", default="/dev/null")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("a server command is required after --")
    url = urllib.parse.urlsplit(args.url)
    headers = dict(header.split(": ", 1) for header in args.header)
    body = args.body.encode()

    log = open(args.log, "w")
    started = time.perf_counter()
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = started + 30
    while time.perf_counter() < deadline:
        if server.poll() is not None:
            sys.exit(f"server exited with {server.returncode}")
        try:
            connection = http.client.HTTPConnection(url.hostname, url.port, timeout=2)
            connection.request("POST", url.path, body=body, headers=headers)
            status = connection.getresponse().status
            connection.close()
            if status == 200:
                print(server.pid, round((time.perf_counter() - started) * 1000, 1))
                return
        except OSError:
            pass
        time.sleep(0.001)
    server.kill()
    sys.exit("no answer within 30 s")


if __name__ == "__main__":
    main()
