"""Drives a running mcp-server with the official MCP Python SDK client, on one wire.

    python_client.py URL --wire legacy|modern

`legacy` is the 2025-11-25 session wire (initialize, Mcp-Session-Id, DELETE at the end);
`modern` is the 2026-07-28 stateless wire, found by the client's `server/discover` probe.
The bearer token comes from MCP_INTEROP_AUTHORIZATION (the whole header value), never
from the command line; without it no Authorization header is sent.

The client initializes, lists tools, calls echo, writes, reads and deletes a document
with the state tools, lists resources and prompts, and closes. Any warning the SDK
raises or logs (WARNING and above, any logger), anything written to stderr and any
failed step fail the run. Prints one summary line; exits 0 only when the run was clean.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import uuid
import warnings
from importlib.metadata import version

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

EXPECTED_VERSION = {"legacy": "2025-11-25", "modern": "2026-07-28"}


class Collect(logging.Handler):
    """Keeps every record at WARNING and above, from any logger."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(f"{record.levelname} {record.name}: {record.getMessage()}")


def structured(result) -> dict:
    if result.is_error:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise AssertionError(f"tool error: {text}")
    if not isinstance(result.structured_content, dict):
        raise AssertionError(f"no structured content: {result!r}")
    return result.structured_content


async def session(url: str, wire: str, headers: dict[str, str], steps: list[str]) -> None:
    """Runs the steps, adding each one's name to `steps` once done. Raises on the first failure."""
    mode = "legacy" if wire == "legacy" else "auto"
    # The SDK takes headers through the HTTP client it is given.
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30, read=60)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode) as client:
            if client.protocol_version != EXPECTED_VERSION[wire]:
                raise AssertionError(f"negotiated {client.protocol_version}, expected {EXPECTED_VERSION[wire]}")
            steps.append(f"connect ({client.protocol_version})")

            tools = {tool.name: tool for tool in (await client.list_tools()).tools}
            missing = {"echo", "state_set", "state_get", "state_delete"} - tools.keys()
            if missing:
                raise AssertionError(f"tools/list lacks {sorted(missing)}")
            steps.append(f"tools/list ({len(tools)} tools)")

            echoed = structured(await client.call_tool("echo", {"message": "interop"}))
            if echoed != {"message": "interop"}:
                raise AssertionError(f"echo answered {echoed}")
            steps.append("echo")

            key = f"interop/python-{wire}-{uuid.uuid4().hex[:8]}"
            written = structured(
                await client.call_tool("state_set", {"key": key, "value": {"n": 1}, "expected_version": 0})
            )
            if written.get("version") != 1:
                raise AssertionError(f"state_set answered {written}")
            read = structured(await client.call_tool("state_get", {"key": key}))
            if (read.get("value"), read.get("version")) != ({"n": 1}, 1):
                raise AssertionError(f"state_get answered {read}")
            deleted = structured(await client.call_tool("state_delete", {"key": key, "expected_version": 1}))
            if deleted.get("deleted") is not True:
                raise AssertionError(f"state_delete answered {deleted}")
            steps.append("state_set/state_get/state_delete")

            resources = (await client.list_resources()).resources
            steps.append(f"resources/list ({len(resources)})")
            prompts = (await client.list_prompts()).prompts
            if not prompts:
                raise AssertionError("prompts/list is empty")
            steps.append(f"prompts/list ({len(prompts)})")
    steps.append("close")


def describe(error: BaseException) -> str:
    """`error`, or the errors inside it when it is a group (anyio task groups raise those)."""
    if isinstance(error, BaseExceptionGroup):
        return "; ".join(describe(inner) for inner in error.exceptions)
    return f"{type(error).__name__}: {error}"


async def run(url: str, wire: str, headers: dict[str, str], steps: list[str]) -> None:
    with anyio.fail_after(60):
        await session(url, wire, headers, steps)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--wire", choices=sorted(EXPECTED_VERSION), required=True)
    args = parser.parse_args()
    headers = {}
    if authorization := os.environ.get("MCP_INTEROP_AUTHORIZATION"):
        headers["Authorization"] = authorization

    label = f"python mcp {version('mcp')} {args.wire}"
    collect = Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    root.setLevel(logging.WARNING)
    stderr = io.StringIO()
    failure = None
    steps: list[str] = []
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(stderr):
        warnings.simplefilter("always")
        try:
            anyio.run(run, args.url, args.wire, headers, steps)
        except BaseException as error:  # noqa: BLE001 - every failure is reported the same way
            failure = describe(error)
    problems = [f"warning {w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
    problems += [f"logged {record}" for record in collect.records]
    problems += [f"stderr: {line}" for line in stderr.getvalue().splitlines() if line.strip()]
    if failure:
        problems.append(f"failed after {', '.join(steps) or 'no step'}: {failure}")
    if problems:
        print(f"FAILED {label}: {len(problems)} problem(s)")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print(f"ok {label}: {', '.join(steps)}; no warnings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
