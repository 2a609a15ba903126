"""The docker-compose tier (local/) and its dashboards, checked without a Docker daemon.

`docker-compose config` (the Debian package, which the test command installs) validates and
resolves local/docker-compose.yml with local/.env.example; the tests then check what the tier
promises. The Prometheus alerts and the Grafana dashboard are checked against the metrics a
real mcp-server exposes on /metrics (MCP_SERVER_BIN, else $CARGO_TARGET_DIR/release/).

    python -m pytest -q -p no:cacheprovider tests/scripts/test_local_tier.py
"""

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "local"
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache" / "mcp-lambda" / "target"))
SERVER_BIN = Path(os.environ.get("MCP_SERVER_BIN", TARGET / "release" / "mcp-server"))
TOKEN_BIN = Path(os.environ.get("MCP_TOKEN_BIN", TARGET / "release" / "mcp-token"))
SIGNING_KEY = secrets.token_hex(32)
DOCKER_COMPOSE = shutil.which("docker-compose")
# A name in a PromQL expression that is a series, not a function or keyword.
SERIES = re.compile(r"\bmcp_[a-z_]+\b")


@pytest.fixture(scope="module")
def compose():
    assert DOCKER_COMPOSE, "docker-compose is not on PATH (scripts/test.sh installs Debian's package)"
    result = subprocess.run(
        [DOCKER_COMPOSE, "--env-file", str(LOCAL / ".env.example"), "-f", str(LOCAL / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call_mcp(port, token=None):
    """One 2026-wire echo call; returns the HTTP status."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "local-tier-test", "version": "1"},
    }
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "hi"}, "_meta": meta}}
    headers = {
        "content-type": "application/json",
        "accept": "application/json, text/event-stream",
        "mcp-protocol-version": "2026-07-28",
        "mcp-method": "tools/call",
        "mcp-name": "echo",
    }
    if token:
        headers["authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"http://127.0.0.1:{port}/mcp", json.dumps(body).encode(), headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture(scope="module")
def exported_metrics(tmp_path_factory):
    """The metric families a real mcp-server lists on its /metrics listener once it has served
    a readiness probe, an accepted call, a refused token and a rate-limited call."""
    assert os.access(SERVER_BIN, os.X_OK), f"mcp-server not built at {SERVER_BIN}"
    token = subprocess.run(
        [str(TOKEN_BIN), "--sub", "local-tier", "--scope", "mcp:read mcp:call"],
        env={**os.environ, "MCP_SIGNING_KEY": SIGNING_KEY},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    data = tmp_path_factory.mktemp("server")
    port, metrics_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MCP_BIND": f"127.0.0.1:{port}",
        "MCP_METRICS_BIND": f"127.0.0.1:{metrics_port}",
        "MCP_STORE_URL": f"sqlite://{data}/mcp.db",
        "MCP_FILES_URL": f"file://{data}/files",
        "MCP_SIGNING_KEY": SIGNING_KEY,
        "MCP_RATE_LIMIT_PER_SEC": "1",
        "MCP_RATE_LIMIT_BURST": "1",
        "RUST_LOG": "warn",
    }
    proc = subprocess.Popen([str(SERVER_BIN)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
        assert call_mcp(port) == 401
        assert [call_mcp(port, token), call_mcp(port, token)] == [200, 429]
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as resp:
            content_type = resp.headers["content-type"]
            text = resp.read().decode()
        # /metrics is not on the MCP listener (there, an unknown path needs a token first).
        with pytest.raises(urllib.error.HTTPError) as not_there:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2)
        assert not_there.value.code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert content_type.startswith("application/openmetrics-text")
    assert f'mcp_tool_calls_total{{tool="echo",outcome="ok"}} 1' in text
    return {line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE ")}


def series_names(families):
    """Every series name Prometheus stores for these families (counters get _total, histograms _bucket/_sum/_count)."""
    names = set()
    for family, kind in families.items():
        if kind == "counter":
            names.add(f"{family}_total")
        elif kind == "histogram":
            names |= {f"{family}_bucket", f"{family}_sum", f"{family}_count"}
        else:
            names.add(family)
    return names


def test_the_server_exports_every_product_metric(exported_metrics):
    assert series_names(exported_metrics) >= {
        "mcp_requests_total",
        "mcp_request_duration_seconds_bucket",
        "mcp_errors_total",
        "mcp_active_sessions",
        "mcp_tool_calls_total",
        "mcp_store_operations_total",
        "mcp_store_duration_seconds_bucket",
        "mcp_auth_failures_total",
        "mcp_rate_limited_total",
    }


def test_the_compose_file_is_valid_and_has_the_tier(compose):
    assert set(compose["services"]) == {"mcp-server", "postgres", "dynamodb", "prometheus", "grafana"}
    assert set(compose["volumes"]) == {"mcp-files", "postgres-data", "dynamodb-data", "prometheus-data", "grafana-data"}


def test_mcp_server_runs_locked_down_on_postgres(compose):
    server = compose["services"]["mcp-server"]
    assert server["build"]["dockerfile"] == "local/Dockerfile"
    assert server["read_only"] is True
    assert server["user"] == "10001:10001"
    assert server["cap_drop"] == ["ALL"]
    assert "/health/ready" in " ".join(server["healthcheck"]["test"])
    environment = server["environment"]
    assert environment["MCP_STORE_URL"] == "postgres://mcp:change-me-postgres@postgres:5432/mcp"
    assert environment["MCP_SIGNING_KEY"] == "change-me-to-a-key-of-at-least-32-bytes"
    assert environment["MCP_METRICS_BIND"] == "0.0.0.0:9464"
    assert server["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_every_port_is_published_on_loopback_only(compose):
    published = {}
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            host_ip, host_port, container = port.split(":")
            assert host_ip == "127.0.0.1", f"{name} publishes {port} beyond loopback"
            published[name] = (int(host_port), container)
    assert published == {
        "mcp-server": (8080, "8080/tcp"),
        "dynamodb": (8000, "8000/tcp"),
        "prometheus": (9091, "9090/tcp"),
        "grafana": (3000, "3000/tcp"),
    }, "metrics (9464) stay inside the compose network"


def test_missing_secrets_stop_compose_with_the_variable_named(tmp_path):
    assert DOCKER_COMPOSE, "docker-compose is not on PATH"
    empty = tmp_path / "empty.env"
    empty.write_text("")
    result = subprocess.run(
        [DOCKER_COMPOSE, "--env-file", str(empty), "-f", str(LOCAL / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k not in {"POSTGRES_PASSWORD", "MCP_SIGNING_KEY", "GRAFANA_ADMIN_PASSWORD"}},
    )
    assert result.returncode != 0
    assert "set POSTGRES_PASSWORD in local/.env" in result.stderr or "set MCP_SIGNING_KEY in local/.env" in result.stderr


def test_compose_requires_a_signing_key_of_its_own(tmp_path):
    assert DOCKER_COMPOSE, "docker-compose is not on PATH"
    without_key = tmp_path / "without-key.env"
    without_key.write_text("POSTGRES_PASSWORD=p\nGRAFANA_ADMIN_PASSWORD=g\n")
    result = subprocess.run(
        [DOCKER_COMPOSE, "--env-file", str(without_key), "-f", str(LOCAL / "docker-compose.yml"), "config"],
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if k != "MCP_SIGNING_KEY"},
    )
    assert result.returncode != 0
    assert "set MCP_SIGNING_KEY in local/.env" in result.stderr


def test_the_image_alone_refuses_the_development_key(tmp_path):
    """The image listens on 0.0.0.0 and sets no key: the server it runs stops at start, naming
    MCP_SIGNING_KEY, until one is given; given one, it serves."""
    dockerfile = (LOCAL / "Dockerfile").read_text()
    assert re.search(r"^ENV MCP_BIND=0\.0\.0\.0:8080", dockerfile, re.MULTILINE)
    assert "MCP_SIGNING_KEY=" not in dockerfile and "MCP_SECRET_ID=" not in dockerfile
    assert os.access(SERVER_BIN, os.X_OK), f"mcp-server not built at {SERVER_BIN}"
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "MCP_BIND": f"0.0.0.0:{port}",
        "MCP_METRICS_BIND": "off",
        "MCP_STORE_URL": f"sqlite://{tmp_path}/mcp.db",
        "MCP_FILES_URL": f"file://{tmp_path}/files",
        "RUST_LOG": "warn",
    }
    refused = subprocess.run([str(SERVER_BIN)], env=env, capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f'mcp-server: invalid MCP_SIGNING_KEY="": is required when MCP_BIND (0.0.0.0:{port}) is not a '
        "loopback address: the built-in development key is public. Set MCP_SIGNING_KEY (at least 32 "
        "bytes) or MCP_SECRET_ID"
    )
    proc = subprocess.Popen(
        [str(SERVER_BIN)], env={**env, "MCP_SIGNING_KEY": SIGNING_KEY}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/live", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_prometheus_scrapes_the_metrics_listener_and_alerts_on_the_slo(compose):
    config = yaml.safe_load((LOCAL / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    assert job["static_configs"][0]["targets"] == ["mcp-server:9464"]
    mounts = compose["services"]["prometheus"]["volumes"]
    assert any(str(m).endswith("/etc/prometheus/alerts.yml:ro") for m in mounts)
    rules = {rule["alert"]: rule["expr"] for rule in yaml.safe_load((LOCAL / "prometheus" / "alerts.yml").read_text())["groups"][0]["rules"]}
    assert rules["McpLatencyP95Over500ms"].startswith("histogram_quantile(0.95,") and rules["McpLatencyP95Over500ms"].endswith("> 0.5")
    assert rules["McpErrorRateOver1Percent"].endswith("> 0.01")


def test_alerts_and_dashboard_read_only_metrics_the_server_exports(exported_metrics):
    known = series_names(exported_metrics)
    alerts = (LOCAL / "prometheus" / "alerts.yml").read_text()
    dashboard = json.loads((LOCAL / "grafana" / "dashboards" / "mcp.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = set(SERIES.findall(alerts)) | {name for expr in expressions for name in SERIES.findall(expr)}
    assert used and used <= known, used - known


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard(compose):
    datasource = yaml.safe_load((LOCAL / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert (source["type"], source["url"], source["uid"]) == ("prometheus", "http://prometheus:9090", "prometheus")
    provider = yaml.safe_load((LOCAL / "grafana" / "provisioning" / "dashboards" / "mcp.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(str(m).endswith(":/var/lib/grafana/dashboards:ro") for m in mounts)
    dashboard = json.loads((LOCAL / "grafana" / "dashboards" / "mcp.json").read_text())
    titles = [panel["title"] for panel in dashboard["panels"]]
    for needed in ("Request rate", "Error rate", "P50 / P95 / P99", "Tool calls by tool", "Store latency", "Rate-limited requests and auth failures"):
        assert any(needed in title for title in titles), needed
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "prometheus"


def test_the_image_is_multi_stage_slim_and_unprivileged():
    dockerfile = (LOCAL / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert len(stages) == 2 and stages[-1] == "debian:bookworm-slim"
    assert re.search(r"^USER 10001:10001$", dockerfile, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n.*/health/ready", dockerfile, re.MULTILINE)
    assert "--locked" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "target" in ignored and ".git" in ignored
