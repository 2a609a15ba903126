"""The Kubernetes manifests (deploy/k8s), rendered by kustomize and checked offline.

Each overlay is rendered with the kustomize inside kubectl (KUBECTL, which scripts/test.sh
installs), validated against the Kubernetes 1.33 API schemas (kubernetes-validate, strict) and
by checkov's Kubernetes checks (CHECKOV); the tests then hold the manifests to the server they
run: probe paths and ports, the variables it reads, its shutdown grace.

    KUBECTL=... CHECKOV=... python -m pytest -q -p no:cacheprovider tests/k8s
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
TOOLS = Path(os.environ.get("MCP_TOOLS_DIR", Path.home() / ".cache" / "mcp-lambda" / "tools"))
KUBECTL = Path(os.environ.get("KUBECTL", TOOLS / "k8s" / "bin" / "kubectl"))
CHECKOV = Path(os.environ.get("CHECKOV", TOOLS / "checkov" / "bin" / "checkov"))
KUBERNETES_VERSION = "1.33.0"
OVERLAYS = ("local", "eks")
CONFIG_RS = (ROOT / "functions" / "mcp" / "src" / "config.rs").read_text()
APP_RS = (ROOT / "functions" / "mcp" / "src" / "app.rs").read_text()
SERVER_HOST_RS = (ROOT / "functions" / "mcp" / "src" / "server_host.rs").read_text()
DOCKERFILE = (ROOT / "local" / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """{overlay: (rendered file, [documents])}: each overlay built by kustomize from a copy of
    deploy/k8s whose secrets.env is the committed example (and, for EKS, a stand-in CA file)."""
    assert os.access(KUBECTL, os.X_OK), f"kubectl (with kustomize) not installed at {KUBECTL}"
    tree = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(K8S, tree, ignore=shutil.ignore_patterns("secrets.env", "rds-ca.pem"))
    for overlay in OVERLAYS:
        shutil.copy(tree / "overlays" / overlay / "secrets.env.example", tree / "overlays" / overlay / "secrets.env")
    (tree / "overlays" / "eks" / "rds-ca.pem").write_text("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n")
    out = {}
    for overlay in OVERLAYS:
        result = subprocess.run(
            [str(KUBECTL), "kustomize", str(tree / "overlays" / overlay)], capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        path = tree.parent / f"{overlay}.yaml"
        path.write_text(result.stdout)
        out[overlay] = (path, [doc for doc in yaml.safe_load_all(result.stdout) if doc])
    return out


def find(docs, kind, name):
    matches = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"].startswith(name)]
    assert len(matches) == 1, (kind, name, [doc["metadata"]["name"] for doc in matches])
    return matches[0]


def server_container(docs):
    (container,) = find(docs, "Deployment", "mcp-server")["spec"]["template"]["spec"]["containers"]
    return container


def config_map(docs):
    return find(docs, "ConfigMap", "mcp-server-config")["data"]


def port_number(container, port):
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return number


def bind_port(value):
    return int(value.rsplit(":", 1)[1])


def variables_config_rs_reads():
    return set(re.findall(r'"((?:MCP|AWS)_[A-Z0-9_]+)"', CONFIG_RS))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_resource_is_valid_against_the_kubernetes_schemas(rendered, overlay):
    _, docs = rendered[overlay]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    kinds = {doc["kind"] for doc in docs}
    assert {"Namespace", "ServiceAccount", "ConfigMap", "Secret", "Deployment", "Service"} <= kinds
    assert {"PodDisruptionBudget", "HorizontalPodAutoscaler", "NetworkPolicy"} <= kinds


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_checkov_kubernetes_checks_pass(rendered, overlay):
    assert os.access(CHECKOV, os.X_OK), f"checkov not installed at {CHECKOV}"
    path, _ = rendered[overlay]
    result = subprocess.run(
        [str(CHECKOV), "--skip-download", "--quiet", "--compact", "--framework", "kubernetes", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Passed checks:" in result.stdout


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_checkov_skip_says_why(rendered, overlay):
    _, docs = rendered[overlay]
    skips = [
        value
        for doc in docs
        for key, value in (doc["metadata"].get("annotations") or {}).items()
        if key.startswith("checkov.io/skip")
    ]
    assert skips
    for skip in skips:
        check, _, reason = skip.partition("=")
        assert re.fullmatch(r"CKV2?_K8S_\d+", check), skip
        assert len(reason.split()) >= 8, f"{check}: a skip needs a written justification"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_ask_the_servers_own_paths_on_its_own_ports(rendered, overlay):
    _, docs = rendered[overlay]
    container = server_container(docs)
    config = config_map(docs)
    mcp_port, metrics_port = bind_port(config["MCP_BIND"]), bind_port(config["MCP_METRICS_BIND"])
    # The image binds the same ports (local/Dockerfile), and both listeners serve the probes:
    # app.rs on the MCP listener, server_host.rs beside /metrics.
    assert f"MCP_BIND=0.0.0.0:{mcp_port}" in DOCKERFILE and f"MCP_METRICS_BIND=0.0.0.0:{metrics_port}" in DOCKERFILE
    assert re.search(rf"^EXPOSE {mcp_port} {metrics_port}$", DOCKERFILE, re.MULTILINE)
    served = {
        mcp_port: set(re.findall(r'\.route\("(/health/[a-z]+)"', APP_RS)),
        metrics_port: set(re.findall(r'\.route\("(/health/[a-z]+|/metrics)"', SERVER_HOST_RS)),
    }
    assert served[mcp_port] == {"/health/live", "/health/ready"}
    assert served[metrics_port] == {"/metrics", "/health/live", "/health/ready"}
    probes = {kind: container[f"{kind}Probe"]["httpGet"] for kind in ("startup", "liveness", "readiness")}
    for kind, probe in probes.items():
        assert probe["path"] in served[port_number(container, probe["port"])], (kind, probe)
    # A flood of /mcp connections must not restart pods: liveness and start-up ask the
    # metrics listener; readiness asks the listener that carries the traffic.
    assert (probes["liveness"]["path"], port_number(container, probes["liveness"]["port"])) == ("/health/live", metrics_port)
    assert port_number(container, probes["startup"]["port"]) == metrics_port
    assert (probes["readiness"]["path"], port_number(container, probes["readiness"]["port"])) == ("/health/ready", mcp_port)
    service = find(docs, "Service", "mcp-server")
    (service_port,) = service["spec"]["ports"]
    assert port_number(container, service_port["targetPort"]) == mcp_port
    scrape = find(docs, "Deployment", "mcp-server")["spec"]["template"]["metadata"]["annotations"]
    assert scrape == {"prometheus.io/scrape": "true", "prometheus.io/port": str(metrics_port), "prometheus.io/path": "/metrics"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_given_is_one_the_server_reads(rendered, overlay):
    _, docs = rendered[overlay]
    known = variables_config_rs_reads()
    assert set(config_map(docs)) <= known, set(config_map(docs)) - known
    container = server_container(docs)
    secret_name = find(docs, "Secret", "mcp-server-secrets")["metadata"]["name"]
    from_secret = {
        variable["name"]: variable["valueFrom"]["secretKeyRef"]
        for variable in container["env"]
        if "secretKeyRef" in variable.get("valueFrom", {})
    }
    # The signing key and the PostgreSQL URL come from the Secret, under the names config.rs reads.
    assert set(from_secret) == {"MCP_SIGNING_KEY", "MCP_STORE_URL"} <= known
    assert all(ref["name"] == secret_name and ref["key"] == name for name, ref in from_secret.items())
    assert [source["configMapRef"]["name"] for source in container["envFrom"]] == [
        find(docs, "ConfigMap", "mcp-server-config")["metadata"]["name"]
    ]
    assert not set(config_map(docs)) & set(from_secret), "a secret value in the ConfigMap"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pod_outlives_the_servers_shutdown_grace(rendered, overlay):
    _, docs = rendered[overlay]
    spec = find(docs, "Deployment", "mcp-server")["spec"]["template"]["spec"]
    default = re.search(r'lookup\("MCP_SHUTDOWN_GRACE_SECS"\)\.unwrap_or\("(\d+)"\)', CONFIG_RS)
    assert default, "config.rs no longer reads MCP_SHUTDOWN_GRACE_SECS as expected"
    grace = int(config_map(docs).get("MCP_SHUTDOWN_GRACE_SECS", default.group(1)))
    (container,) = spec["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    # The endpoints forget the pod during preStop, then SIGTERM gives requests in flight the
    # grace, and the process exits within 5 s more before SIGKILL.
    assert spec["terminationGracePeriodSeconds"] == int(command[1]) + grace + 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_locked_down_with_bounded_resources(rendered, overlay):
    _, docs = rendered[overlay]
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet"):
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False, doc["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"] == {"drop": ["ALL"]}, container["name"]
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
            assert set(container["resources"]["requests"]) == set(container["resources"]["limits"]) == {"cpu", "memory"}
            assert {"livenessProbe", "readinessProbe", "startupProbe"} <= set(container), container["name"]
    assert server_container(docs)["securityContext"]["runAsUser"] == 10001
    assert re.search(r"^USER 10001:10001$", DOCKERFILE, re.MULTILINE)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_two_replicas_scale_out_and_survive_a_drain(rendered, overlay):
    _, docs = rendered[overlay]
    selector = {"app.kubernetes.io/name": "mcp-server"}
    deployment = find(docs, "Deployment", "mcp-server")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["selector"]["matchLabels"] == selector
    hpa = find(docs, "HorizontalPodAutoscaler", "mcp-server")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mcp-server"}
    assert hpa["minReplicas"] == 2 and hpa["maxReplicas"] > 2
    pdb = find(docs, "PodDisruptionBudget", "mcp-server")["spec"]
    assert pdb == {"minAvailable": 1, "selector": {"matchLabels": selector}}
    assert find(docs, "Service", "mcp-server")["spec"]["selector"] == selector
    policy = find(docs, "NetworkPolicy", "mcp-server")["spec"]
    assert policy["podSelector"]["matchLabels"] == selector
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    # /metrics only from the monitoring namespace.
    (metrics_rule,) = [rule for rule in policy["ingress"] if rule["ports"][0]["port"] == "metrics"]
    assert metrics_rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert {doc["metadata"].get("namespace", "mcp") for doc in docs} == {"mcp"}


def env_example(overlay):
    lines = (K8S / "overlays" / overlay / "secrets.env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_local_overlay_runs_postgresql_in_the_cluster(rendered):
    _, docs = rendered["local"]
    postgres = find(docs, "StatefulSet", "postgres")
    (container,) = postgres["spec"]["template"]["spec"]["containers"]
    secret_name = find(docs, "Secret", "mcp-server-secrets")["metadata"]["name"]
    password = next(v for v in container["env"] if v["name"] == "POSTGRES_PASSWORD")
    assert password["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": "POSTGRES_PASSWORD"}
    service = find(docs, "Service", "postgres")
    example = env_example("local")
    url = urlparse(example["MCP_STORE_URL"])
    assert (url.scheme, url.hostname, url.port) == ("postgres", service["metadata"]["name"], service["spec"]["ports"][0]["port"])
    assert url.password == example["POSTGRES_PASSWORD"]
    # Only mcp-server reaches PostgreSQL, and PostgreSQL reaches nothing.
    policy = find(docs, "NetworkPolicy", "postgres")["spec"]
    assert policy["ingress"] == [
        {"from": [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mcp-server"}}}], "ports": [{"port": "postgres", "protocol": "TCP"}]}
    ]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and "egress" not in policy
    # Both replicas write files to one volume; KIND runs the image it loaded.
    deployment = find(docs, "Deployment", "mcp-server")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["files"] == {"name": "files", "persistentVolumeClaim": {"claimName": "mcp-files"}}
    assert config_map(docs)["MCP_FILES_URL"] == "file:///data/files"
    assert server_container(docs)["imagePullPolicy"] == "IfNotPresent"
    assert server_container(docs)["image"] == "mcp-server:local"


def test_the_eks_overlay_uses_rds_s3_and_an_alb(rendered):
    _, docs = rendered["eks"]
    assert not [doc for doc in docs if doc["kind"] in ("StatefulSet", "PersistentVolumeClaim")]
    config = config_map(docs)
    assert config["MCP_FILES_URL"].startswith("s3://") and config["AWS_REGION"]
    url = urlparse(env_example("eks")["MCP_STORE_URL"])
    assert url.hostname.endswith(".rds.amazonaws.com")
    query = parse_qs(url.query)
    assert query["sslmode"] == ["verify-full"]
    mounts = {m["name"]: m["mountPath"] for m in server_container(docs)["volumeMounts"]}
    assert query["sslrootcert"][0] == f"{mounts['rds-ca']}/rds-ca.pem"
    assert "files" not in mounts
    assert server_container(docs)["imagePullPolicy"] == "Always"
    assert ".dkr.ecr." in server_container(docs)["image"]
    ingress = find(docs, "Ingress", "mcp-server")
    annotations = ingress["metadata"]["annotations"]
    assert ingress["spec"]["ingressClassName"] == "alb"
    assert annotations["alb.ingress.kubernetes.io/listen-ports"] == '[{"HTTPS": 443}]'
    assert annotations["alb.ingress.kubernetes.io/healthcheck-path"] == "/health/ready"
    (rule,) = ingress["spec"]["rules"]
    assert config["MCP_ALLOWED_HOSTS"] == rule["host"]
    assert config["MCP_AUTH_AUDIENCE"] == config["MCP_RESOURCE_URL"] == f"https://{rule['host']}/mcp"
    role = find(docs, "ServiceAccount", "mcp-server")["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.startswith("arn:aws:iam::")


def test_secrets_and_the_ca_bundle_stay_out_of_git():
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert "/deploy/k8s/overlays/*/secrets.env" in ignored
    assert "/deploy/k8s/overlays/eks/rds-ca.pem" in ignored
