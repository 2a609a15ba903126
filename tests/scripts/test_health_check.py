"""scripts/health-check.sh against real mcp-server processes on loopback.

Binaries: MCP_SERVER_BIN and MCP_TOKEN_BIN, else $CARGO_TARGET_DIR/release/ (CARGO_TARGET_DIR
defaults to ~/.cache/mcp-lambda/target, where scripts/test.sh builds). The degraded-store test
needs PostgreSQL at 127.0.0.1:5432 (trust auth, database `test`; MCP_TEST_POSTGRES_URL
overrides it) and is skipped without it.

    python -m pytest -q -p no:cacheprovider tests/scripts/test_health_check.py
"""

import json
import os
import secrets
import select
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "health-check.sh"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "mcp-lambda" / "target"))
SERVER_BIN = Path(os.environ.get("MCP_SERVER_BIN", TARGET / "release" / "mcp-server"))
TOKEN_BIN = Path(os.environ.get("MCP_TOKEN_BIN", TARGET / "release" / "mcp-token"))
POSTGRES_URL = os.environ.get("MCP_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
BASH = shutil.which("bash") or "/bin/bash"
# A random key per run, so a token only works against the servers these tests start.
SIGNING_KEY = secrets.token_hex(32)
CHECKS = {"liveness", "readiness", "mcp_2026", "mcp_2025"}

needs_binaries = pytest.mark.skipif(
    not (os.access(SERVER_BIN, os.X_OK) and os.access(TOKEN_BIN, os.X_OK)),
    reason=f"mcp-server/mcp-token not built (looked at {SERVER_BIN} and {TOKEN_BIN})",
)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_for(predicate, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def run_check(*args, env=None, timeout=60):
    full_env = {**os.environ, "MCP_TOKEN_BIN": str(TOKEN_BIN), "MCP_SIGNING_KEY": SIGNING_KEY}
    full_env.update(env or {})
    return subprocess.run(
        [BASH, str(SCRIPT), *map(str, args)],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def write_conf(path, *lines):
    path.write_text("".join(line + "\n" for line in lines))
    return path


def parse_json_report(result):
    report = json.loads(result.stdout)
    return report, {env["name"]: env for env in report["environments"]}


class Server:
    def __init__(self, port, proc, log):
        self.port, self.proc, self.log = port, proc, log
        self.base = f"http://127.0.0.1:{port}"


@pytest.fixture
def start_server(tmp_path):
    """Starts mcp-server processes on free loopback ports; every one is stopped at teardown."""
    started = []

    def start(store_url=None, audience=None, port=None):
        port = port or free_port()
        data = tmp_path / f"server-{port}"
        (data / "files").mkdir(parents=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(tmp_path),
            "MCP_BIND": f"127.0.0.1:{port}",
            "MCP_STORE_URL": store_url or f"sqlite://{data}/mcp.db",
            "MCP_FILES_URL": f"file://{data}/files",
            "MCP_AUTH_AUDIENCE": audience or f"http://127.0.0.1:{port}/mcp",
            "MCP_SIGNING_KEY": SIGNING_KEY,
            "MCP_LOG_FORMAT": "text",
            "MCP_METRICS_BIND": "off",
            "RUST_LOG": "warn",
        }
        log = data / "server.log"
        with open(log, "w") as out:
            proc = subprocess.Popen([str(SERVER_BIN)], env=env, stdout=out, stderr=subprocess.STDOUT)
        server = Server(port, proc, log)
        started.append(server)

        def ready():
            if proc.poll() is not None:
                raise AssertionError(f"mcp-server exited {proc.returncode}: {log.read_text()}")
            return http_status(f"{server.base}/health/ready") == 200

        wait_for(ready, what=f"mcp-server on port {port}")
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                server.proc.kill()
                server.proc.wait()


class Forwarder:
    """A loopback TCP forwarder that can be cut off, open connections included.

    With `tls` (an ssl.SSLContext) it terminates TLS in front of a plain-HTTP target; with
    `delay` (seconds) it holds back every chunk the target sends. Each connection is served by
    one thread with select(), so an SSL socket is never used from two threads at once.
    """

    def __init__(self, target, tls=None, delay=0.0):
        self.target, self.tls, self.delay = target, tls, delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets, self.lock, self.stopped = [], threading.Lock(), False
        threading.Thread(target=self._accept, daemon=True).start()

    def _track(self, sock):
        with self.lock:
            if self.stopped:
                sock.close()
                return False
            self.sockets.append(sock)
            return True

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self._track(client):
                threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client):
        upstream = None
        try:
            if self.tls is not None:
                client.settimeout(5)
                client = self.tls.wrap_socket(client, server_side=True)
                client.settimeout(None)
                if not self._track(client):
                    return
            upstream = socket.create_connection(self.target, timeout=5)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if not self._track(upstream):
                return
            pairs = {client: upstream, upstream: client}
            while True:
                pending = [client] if self.tls is not None and client.pending() else []
                readable = pending or select.select(list(pairs), [], [], 1.0)[0]
                for src in readable:
                    data = src.recv(65536)
                    if not data:
                        return
                    if src is upstream and self.delay:
                        time.sleep(self.delay)
                    pairs[src].sendall(data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass

    def stop(self):
        with self.lock:
            self.stopped = True
            sockets, self.sockets = self.sockets, []
        # shutdown() wakes a thread blocked in accept()/recv(); close() alone does not on Linux.
        for sock in [self.listener, *sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()


@pytest.fixture
def forwarders():
    made = []

    def make(target, tls=None, delay=0.0):
        fwd = Forwarder(target, tls, delay)
        made.append(fwd)
        return fwd

    yield make
    for fwd in made:
        fwd.stop()


# --- usage errors ------------------------------------------------------------------------


def test_help_prints_usage_and_config_format():
    result = run_check("--help")
    assert result.returncode == 0
    assert "all report" in result.stdout
    assert "token_source" in result.stdout
    assert "Exit codes" in result.stdout


def test_unknown_flag_is_a_usage_error():
    result = run_check("--frobnicate", "all")
    assert result.returncode == 64
    assert "unknown option: --frobnicate" in result.stderr


def test_no_target_is_a_usage_error():
    result = run_check("--json")
    assert result.returncode == 64


def test_malformed_config_line_names_the_line(tmp_path):
    conf = write_conf(
        tmp_path / "bad.conf",
        "# environments",
        "local http://127.0.0.1:8080 mint",
        "",
        "staging http://127.0.0.1:8081",
    )
    result = run_check("all", "report", "--config", conf)
    assert result.returncode == 64
    assert "line 4" in result.stderr
    assert result.stdout == ""


def test_bad_token_source_names_the_line(tmp_path):
    conf = write_conf(tmp_path / "bad.conf", "local http://127.0.0.1:8080 mint", "prod ftp://x env:T")
    result = run_check("all", "--config", conf)
    assert result.returncode == 64
    assert "line 2" in result.stderr and "base_url" in result.stderr


def test_unknown_environment_is_a_usage_error(tmp_path):
    conf = write_conf(tmp_path / "h.conf", "local http://127.0.0.1:8080 mint")
    result = run_check("nowhere", "--config", conf)
    assert result.returncode == 64
    assert "unknown environment 'nowhere'" in result.stderr
    assert "local" in result.stderr


def test_missing_config_file_is_a_usage_error(tmp_path):
    result = run_check("all", "--config", tmp_path / "absent.conf")
    assert result.returncode == 64
    assert "absent.conf" in result.stderr


# --- against real servers ----------------------------------------------------------------


@needs_binaries
def test_healthy_server_passes_every_check(start_server, tmp_path):
    server = start_server()
    conf = write_conf(tmp_path / "h.conf", f"local {server.base} mint")

    table = run_check("local", "--config", conf)
    assert table.returncode == 0, table.stdout + table.stderr
    assert table.stdout.splitlines()[-1].startswith("summary: healthy")

    result = run_check("local", "--json", "--config", conf)
    assert result.returncode == 0, result.stdout + result.stderr
    report, envs = parse_json_report(result)
    assert report["status"] == "healthy"
    env = envs["local"]
    assert env["status"] == "healthy" and env["url"] == server.base
    checks = {c["name"]: c for c in env["checks"]}
    assert set(checks) == CHECKS
    for check in env["checks"]:
        assert check["ok"] is True, check
        assert isinstance(check["latency_ms"], float)
    assert "health_check status ok" in checks["mcp_2026"]["detail"]
    assert "session closed" in checks["mcp_2025"]["detail"]
    assert checks["readiness"]["dependencies"]["store"]["status"] == "up"
    assert checks["readiness"]["dependencies"]["files"]["status"] == "up"


@needs_binaries
def test_stopped_port_is_down(tmp_path):
    conf = write_conf(tmp_path / "h.conf", f"gone http://127.0.0.1:{free_port()} mint")
    result = run_check("gone", "--json", "--config", conf)
    assert result.returncode == 2, result.stdout + result.stderr
    report, envs = parse_json_report(result)
    assert report["status"] == "down"
    checks = {c["name"]: c for c in envs["gone"]["checks"]}
    assert envs["gone"]["status"] == "down"
    assert checks["liveness"]["ok"] is False
    assert "connect" in checks["liveness"]["detail"].lower()


@needs_binaries
def test_all_report_with_one_healthy_and_one_down(start_server, tmp_path):
    server = start_server()
    conf = write_conf(
        tmp_path / "h.conf",
        "# two environments",
        f"local {server.base}/mcp mint   # a pasted McpUrl works too",
        f"gone  http://127.0.0.1:{free_port()} mint",
    )
    result = run_check("all", "report", "--config", conf)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["ENV", "CHECK", "STATUS", "LATENCY_MS", "DETAIL"]
    rows = [line.split() for line in lines[1:-1]]
    assert {(r[0], r[1], r[2]) for r in rows if r[0] == "local"} == {("local", c, "ok") for c in CHECKS}
    assert ["gone", "liveness", "fail"] == rows[[r[0] for r in rows].index("gone")][:3]
    assert lines[-1].startswith("summary: down")
    assert "local healthy" in lines[-1] and "gone down" in lines[-1]


@needs_binaries
def test_wrong_token_fails_mcp_checks_without_printing_it(start_server, tmp_path):
    server = start_server()
    garbage = "garbage-" + secrets.token_hex(16)
    conf = write_conf(tmp_path / "h.conf", f"local {server.base} env:HC_TEST_TOKEN")
    for fmt in ([], ["--json"]):
        result = run_check("local", *fmt, "--config", conf, env={"HC_TEST_TOKEN": garbage})
        assert result.returncode == 1, result.stdout + result.stderr
        assert garbage not in result.stdout and garbage not in result.stderr
    report, envs = parse_json_report(result)
    assert report["status"] == "degraded"
    checks = {c["name"]: c for c in envs["local"]["checks"]}
    assert checks["liveness"]["ok"] and checks["readiness"]["ok"]
    for name in ("mcp_2026", "mcp_2025"):
        assert checks[name]["ok"] is False
        assert "HTTP 401 invalid_token" in checks[name]["detail"]


@needs_binaries
def test_minted_token_for_another_key_is_refused(start_server, tmp_path):
    server = start_server()
    conf = write_conf(tmp_path / "h.conf", f"local {server.base} mint:OTHER_KEY")
    result = run_check("local", "--json", "--config", conf, env={"OTHER_KEY": secrets.token_hex(32)})
    assert result.returncode == 1, result.stdout + result.stderr
    _, envs = parse_json_report(result)
    checks = {c["name"]: c for c in envs["local"]["checks"]}
    assert "HTTP 401" in checks["mcp_2026"]["detail"]


def postgres_available():
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    try:
        with socket.create_connection((parts.hostname, parts.port or 5432), timeout=1):
            return True
    except OSError:
        return False


@needs_binaries
@pytest.mark.skipif(not postgres_available(), reason=f"no PostgreSQL at {POSTGRES_URL}")
def test_unreachable_store_is_degraded(start_server, forwarders, tmp_path):
    parts = urllib.parse.urlsplit(POSTGRES_URL)
    proxy = forwarders((parts.hostname, parts.port or 5432))
    store = POSTGRES_URL.replace(parts.netloc.rpartition("@")[2], f"127.0.0.1:{proxy.port}")
    server = start_server(store_url=store)
    conf = write_conf(tmp_path / "h.conf", f"staging {server.base} mint")

    proxy.stop()
    wait_for(lambda: http_status(f"{server.base}/health/ready") == 503, what="readiness to fail")

    # The session wire waits on the store's pool; a short limit keeps the test quick.
    result = run_check("staging", "--json", "--timeout", "3", "--config", conf)
    assert result.returncode == 1, result.stdout + result.stderr
    report, envs = parse_json_report(result)
    assert report["status"] == "degraded"
    checks = {c["name"]: c for c in envs["staging"]["checks"]}
    assert checks["liveness"]["ok"] is True
    assert checks["readiness"]["ok"] is False
    assert checks["readiness"]["dependencies"]["store"]["status"] != "up"
    assert checks["readiness"]["dependencies"]["files"]["status"] == "up"
    assert "HTTP 503" in checks["readiness"]["detail"]


@needs_binaries
def test_slow_answers_are_degraded(start_server, forwarders, tmp_path):
    server = start_server()
    proxy = forwarders(("127.0.0.1", server.port), delay=0.15)
    # Through the forwarder the Host header names its port, which the server accepts (any
    # port of 127.0.0.1), and the token's audience stays the server's own URL.
    conf = write_conf(tmp_path / "h.conf", f"slow http://127.0.0.1:{proxy.port} env:HC_TOKEN")
    token = subprocess.run(
        [str(TOKEN_BIN), "--sub", "hc", "--scope", "mcp:read mcp:call", "--aud", f"{server.base}/mcp"],
        env={**os.environ, "MCP_SIGNING_KEY": SIGNING_KEY}, capture_output=True, text=True, check=True,
    ).stdout.strip()
    result = run_check("slow", "--json", "--slow-ms", "100", "--config", conf, env={"HC_TOKEN": token})
    assert result.returncode == 1, result.stdout + result.stderr
    report, envs = parse_json_report(result)
    assert report["status"] == envs["slow"]["status"] == "degraded"
    for check in envs["slow"]["checks"]:
        assert check["status"] == "slow", check
        assert check["ok"] is False and check["latency_ms"] > 100


@needs_binaries
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not on PATH")
def test_certificate_near_expiry_is_degraded(start_server, forwarders, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", key, "-out", cert, "-days", "5", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    # The TLS port is only known once the forwarder listens, and the server's audience must
    # name it; so the forwarder starts first and is pointed at the server's port afterwards.
    backend_port = free_port()
    proxy = forwarders(("127.0.0.1", backend_port), tls=tls)
    public = f"https://127.0.0.1:{proxy.port}"
    start_server(audience=f"{public}/mcp", port=backend_port)

    conf = write_conf(tmp_path / "h.conf", f"edge {public} mint")
    ca = {"SSL_CERT_FILE": str(cert), "CURL_CA_BUNDLE": str(cert)}
    result = run_check("edge", "--json", "--config", conf, env=ca)
    assert result.returncode == 1, result.stdout + result.stderr
    _, envs = parse_json_report(result)
    checks = {c["name"]: c for c in envs["edge"]["checks"]}
    assert checks["tls"]["status"] == "warn"
    assert "expires in 4." in checks["tls"]["detail"] or "expires in 5." in checks["tls"]["detail"]
    for name in CHECKS:
        assert checks[name]["ok"] is True, checks[name]


# --- environments from stack outputs -----------------------------------------------------


def bin_dir_without_aws(tmp_path):
    """A PATH holding only what the script runs, so `aws` is certainly absent."""
    path = tmp_path / "bin-no-aws"
    path.mkdir()
    for tool in ("curl", "mktemp", "rm", "dirname", "head", "grep", "sed", "cat", "env"):
        found = shutil.which(tool)
        if found:
            (path / tool).symlink_to(found)
    (path / "python3").symlink_to(os.path.realpath(sys.executable))
    return path


@needs_binaries
def test_stack_environment_resolves_through_aws(start_server, tmp_path):
    server = start_server()
    fake = tmp_path / "fake-aws"
    fake.mkdir()
    (fake / "aws").write_text(
        "#!/usr/bin/env bash\n"
        'case " $* " in\n'
        f'  *" --stack-name mcp-test "*) echo "{server.base}/mcp" ;;\n'
        '  *) echo "An error occurred (ValidationError): Stack does not exist" >&2; exit 254 ;;\n'
        "esac\n"
    )
    (fake / "aws").chmod(0o755)
    conf = write_conf(tmp_path / "h.conf", "test stack:mcp-test mint", "prod stack:mcp-prod@eu-west-1 mint")
    env = {"PATH": f"{fake}:{os.environ['PATH']}"}

    result = run_check("all", "--json", "--config", conf, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    _, envs = parse_json_report(result)
    assert envs["test"]["status"] == "healthy"
    assert envs["test"]["url"] == server.base
    assert envs["prod"]["status"] == "down"
    assert "Stack does not exist" in envs["prod"]["checks"][0]["detail"]


def test_stack_environment_without_aws_is_down(tmp_path):
    conf = write_conf(tmp_path / "h.conf", "prod stack:mcp-prod mint")
    result = run_check("prod", "--json", "--config", conf, env={"PATH": str(bin_dir_without_aws(tmp_path))})
    assert result.returncode == 2, result.stdout + result.stderr
    report, envs = parse_json_report(result)
    assert report["status"] == "down"
    assert envs["prod"]["url"] == "stack:mcp-prod"
    assert envs["prod"]["checks"][0]["name"] == "resolve"
    assert "aws CLI not on PATH" in envs["prod"]["checks"][0]["detail"]
