"""infra/: the deployment files parse and agree with the code and with each other.

None of them can run here (no image registry), so this checks what can be checked without Docker or Kubernetes:
the YAML parses, Dockerfile instructions parse, service names, ports and environment variables match between
services and match what the code reads, the work pool is prefect.yaml's, and every command they run exists
(flows/<name>.py, the `stable-verl` console script, infra/install_cpu.sh, files COPY'd).
Environment variable names are found by grepping the sources, not by importing modules that may move.
"""

from __future__ import annotations

import importlib
import inspect
import re
import shlex
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
COMPOSE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / ".env.example"
DOCKERFILE_CPU = INFRA / "Dockerfile.cpu"
DOCKERFILE_GPU = INFRA / "Dockerfile.gpu"
KUBERAY = INFRA / "kuberay"
README = INFRA / "README.md"
PREFECT_YAML = ROOT / "prefect.yaml"
PYPROJECT = ROOT / "pyproject.toml"

HOME = "/srv/stable-verl"  # the checkout inside both images: $STABLE_VERL_HOME
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
PORTS = {"prefect": 4200, "minio": 9000, "minio_console": 9001, "gcs": 6379, "dashboard": 8265, "postgres": 5432}
SERVICES = {"minio", "postgres", "prefect-server", "prefect-worker", "ray-head", "ray-worker"}
OWN_IMAGE_SERVICES = {"prefect-server", "prefect-worker", "ray-head", "ray-worker"}
STORE_ENV = {"STABLE_VERL_ARTIFACT_ROOT", "STABLE_VERL_S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
INFRA_FILES = [COMPOSE, ENV_EXAMPLE, DOCKERFILE_CPU, DOCKERFILE_GPU, README, *sorted(KUBERAY.glob("*.yaml"))]

DOCKERFILE_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER", "WORKDIR",
    "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


# ------------------------------------------------------------------------------------------------ helpers
def parse_dockerfile(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction: comments dropped, backslash continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comment lines inside a continued instruction are ignored by Docker too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, args = full.partition(" ")
        out.append((word.upper(), args.strip()))
        assert word.isupper(), f"instruction not upper case: {full[:60]!r}"
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for word, args in instructions:
        if word == "ENV":
            for token in shlex.split(args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV without key=value: {token!r}"
                env[key] = value
    return env


def grep_sources(name: str) -> list[Path]:
    """Python files of the package and flows that mention ``name`` (a string literal such as an env var)."""
    files = [*(ROOT / "stable_verl").rglob("*.py"), *(ROOT / "flows").rglob("*.py")]
    return [f for f in files if f'"{name}"' in f.read_text()]


def flow_modules(text: str) -> set[str]:
    return set(re.findall(r"python3? -m flows\.(\w+)", text))


def as_text(command: Any) -> str:
    return " ".join(command) if isinstance(command, list) else str(command)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def kuberay() -> dict[str, dict[str, Any]]:
    docs = [d for f in sorted(KUBERAY.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
    return {d["kind"]: d for d in docs}


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    return tomllib.loads(PYPROJECT.read_text())


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items()}


# ------------------------------------------------------------------------------------------------ parsing
def test_every_yaml_parses():
    for path in [COMPOSE, *KUBERAY.glob("*.yaml")]:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs and all(isinstance(d, dict) for d in docs), path


@pytest.mark.parametrize("path", [DOCKERFILE_CPU, DOCKERFILE_GPU], ids=lambda p: p.name)
def test_dockerfile_instructions_parse(path):
    instructions = parse_dockerfile(path.read_text())
    words = [w for w, _ in instructions]
    assert set(words) <= DOCKERFILE_INSTRUCTIONS, set(words) - DOCKERFILE_INSTRUCTIONS
    assert [w for w in words if w != "ARG"][0] == "FROM", "FROM first (after ARGs)"
    assert ("WORKDIR", HOME) in instructions
    assert dockerfile_env(instructions)["STABLE_VERL_HOME"] == HOME
    assert f"{HOME}/.venv/bin" in dockerfile_env(instructions)["PATH"]
    for word, args in instructions:
        if word in ("COPY", "ADD"):
            *sources, _dest = shlex.split(args)
            for src in sources:
                assert not src.startswith("--"), "no COPY flags expected"
                assert (ROOT / src).exists(), f"{path.name} copies {src}, not in the repository"


def test_parser_rejects_broken_dockerfile():
    with pytest.raises(AssertionError):
        parse_dockerfile("FROM python:3.11\nRUN echo \\\n")
    with pytest.raises(AssertionError):
        parse_dockerfile("from python:3.11\n")


# ------------------------------------------------------------------------------------------------ images
def test_cpu_image_builds_the_locked_stack():
    instructions = parse_dockerfile(DOCKERFILE_CPU.read_text())
    runs = " ".join(a for w, a in instructions if w == "RUN")
    assert "bash infra/install_cpu.sh" in runs
    assert (INFRA / "install_cpu.sh").is_file() and (INFRA / "requirements-cpu.lock").is_file()
    env = dockerfile_env(instructions)
    assert env["UV_EXTRA_INDEX_URL"] == TORCH_CPU_INDEX
    assert env["PIP_EXTRA_INDEX_URL"] == TORCH_CPU_INDEX
    assert env["UV_INDEX_STRATEGY"] == "unsafe-best-match"
    lock = (INFRA / "requirements-cpu.lock").read_text()
    assert re.search(r"^torch==[\d.]+\+cpu$", lock, re.M), "the lock's torch is the CPU build the index serves"
    from_image = next(a for w, a in instructions if w == "FROM")
    py = re.search(r"python:(\d+\.\d+)", from_image)
    requires = tomllib.loads(PYPROJECT.read_text())["project"]["requires-python"]
    assert py and requires == ">=3.11" and tuple(map(int, py.group(1).split("."))) >= (3, 11)


def test_gpu_image_installs_the_gpu_extra(pyproject):
    runs = " ".join(a for w, a in parse_dockerfile(DOCKERFILE_GPU.read_text()) if w == "RUN")
    assert re.search(r"pip install -e \"\.\[gpu\]\"", runs)
    assert any(dep.startswith("verl[vllm]") for dep in pyproject["project"]["optional-dependencies"]["gpu"])


def test_console_script_used_in_images_exists(pyproject):
    assert "stable-verl" in pyproject["project"]["scripts"]
    for path in (DOCKERFILE_CPU, DOCKERFILE_GPU):
        assert "stable-verl" in path.read_text()


def test_dockerignore_keeps_local_state_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "artifacts", "infra/.env"} <= set(ignored)
    for needed in ("infra", "stable_verl", "flows", "configs", "prefect.yaml", "pyproject.toml"):
        assert needed not in ignored


# ------------------------------------------------------------------------------------------------ compose
def test_compose_has_the_services(services):
    assert set(services) >= SERVICES


def test_own_image_services_build_from_the_cpu_dockerfile(services):
    images = set()
    for name in OWN_IMAGE_SERVICES:
        build = services[name]["build"]
        assert (COMPOSE.parent / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == DOCKERFILE_CPU
        images.add(services[name]["image"])
    assert len(images) == 1, "one image for all our services"


def test_compose_ports_agree(services):
    def published(name: str) -> set[int]:
        return {int(str(p).rsplit(":", 1)[-1]) for p in services[name].get("ports", [])}

    minio_cmd = as_text(services["minio"]["command"])
    assert f":{PORTS['minio']}" in minio_cmd and f"--console-address :{PORTS['minio_console']}" in minio_cmd
    assert {PORTS["minio"], PORTS["minio_console"]} <= published("minio")
    assert PORTS["postgres"] in published("postgres")

    server_cmd = services["prefect-server"]["command"]
    assert server_cmd[:3] == ["prefect", "server", "start"]
    assert server_cmd[server_cmd.index("--port") + 1] == str(PORTS["prefect"])
    assert server_cmd[server_cmd.index("--host") + 1] == "0.0.0.0"
    assert PORTS["prefect"] in published("prefect-server")
    db_url = env_of(services["prefect-server"])["PREFECT_SERVER_DATABASE_CONNECTION_URL"]
    assert db_url.startswith("postgresql+asyncpg://") and f"@postgres:{PORTS['postgres']}/" in db_url
    assert re.search(r"^asyncpg==", (INFRA / "requirements-cpu.lock").read_text(), re.M), "the image has asyncpg"

    head = as_text(services["ray-head"]["command"])
    assert head.startswith("ray start --head")
    assert f"--port={PORTS['gcs']}" in head and f"--dashboard-port={PORTS['dashboard']}" in head
    assert "--dashboard-host=0.0.0.0" in head
    assert PORTS["dashboard"] in published("ray-head")
    worker = as_text(services["ray-worker"]["command"])
    assert worker.startswith("ray start") and f"--address=ray-head:{PORTS['gcs']}" in worker


def test_worker_environment_points_at_the_services(services):
    env = env_of(services["prefect-worker"])
    assert env["PREFECT_API_URL"] == f"http://prefect-server:{PORTS['prefect']}/api"
    assert env["STABLE_VERL_S3_ENDPOINT"] == f"http://minio:{PORTS['minio']}"
    assert env["STABLE_VERL_ARTIFACT_ROOT"].startswith("s3://")
    assert env["RAY_ADDRESS"] == f"http://ray-head:{PORTS['dashboard']}"
    assert env["STABLE_VERL_HOME"] == HOME
    for name in ("prefect-worker", "ray-head", "ray-worker"):
        assert STORE_ENV <= set(env_of(services[name])), f"{name} lacks the store's settings"
    # the bucket the stages write to is the one minio-init creates
    bucket = re.match(r"s3://([^/]+)", env["STABLE_VERL_ARTIFACT_ROOT"]).group(1)
    assert bucket == env_of(services["minio-init"])["STABLE_VERL_BUCKET"]
    assert "mc mb" in as_text(services["minio-init"]["command"])


def test_worker_polls_prefect_yamls_pool(services):
    spec = yaml.safe_load(PREFECT_YAML.read_text())
    pools = {d["work_pool"]["name"] for d in spec["deployments"]}
    assert len(pools) == 1
    command = services["prefect-worker"]["command"]
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--pool") + 1] in pools
    assert command[command.index("--type") + 1] == "process"
    assert "{{ $STABLE_VERL_HOME }}" in PREFECT_YAML.read_text()


def test_env_vars_are_the_ones_the_code_reads(services, kuberay):
    """Every STABLE_VERL_* name set in infra/ is read somewhere (code or prefect.yaml), and the endpoint is one of
    the names the store reads."""
    names: set[str] = set()
    for svc in services.values():
        names |= set(env_of(svc))
    names |= set(kuberay["Secret"]["stringData"])
    for svc in kuberay["RayCluster"]["spec"]["headGroupSpec"]["template"]["spec"]["containers"]:
        names |= {e["name"] for e in svc.get("env", [])}
    ours = {n for n in names if n.startswith("STABLE_VERL_")}
    assert {"STABLE_VERL_ARTIFACT_ROOT", "STABLE_VERL_S3_ENDPOINT", "STABLE_VERL_HOME"} <= ours
    for name in ours - {"STABLE_VERL_BUCKET", "STABLE_VERL_S3_ACCESS_KEY", "STABLE_VERL_S3_SECRET_KEY"}:
        assert grep_sources(name) or name in PREFECT_YAML.read_text(), f"{name} is read by nothing"
    store_src = "".join(f.read_text() for f in grep_sources("STABLE_VERL_S3_ENDPOINT"))
    assert '"AWS_ENDPOINT_URL_S3"' in store_src, "the store's endpoint variables moved: update infra/"
    assert grep_sources("RAY_ADDRESS"), "the code handles RAY_ADDRESS (see infra/README.md, known gaps)"
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_DATABASE_CONNECTION_URL, PREFECT_UI_API_URL

    assert {PREFECT_API_URL.name, PREFECT_SERVER_DATABASE_CONNECTION_URL.name, PREFECT_UI_API_URL.name} <= names


def test_compose_variables_are_in_env_example(compose):
    text = COMPOSE.read_text()
    used = set(re.findall(r"(?<!\$)\$\{(\w+)", text))
    example = dict(
        line.split("=", 1) for line in ENV_EXAMPLE.read_text().splitlines() if line and not line.startswith("#")
    )
    assert used <= set(example), f"not in infra/.env.example: {used - set(example)}"
    assert set(example) <= used, f"unused in docker-compose.yml: {set(example) - used}"
    for key, value in example.items():
        if any(w in key for w in ("PASSWORD", "SECRET")):
            assert value.startswith("change-me"), f"{key} must be a placeholder"
    assert "infra/.env" in (ROOT / ".gitignore").read_text().split()


def _flags(command: Any) -> set[str]:
    return {token.split("=", 1)[0] for token in shlex.split(as_text(command)) if token.startswith("--")}


def _prefect_options(fn: Any) -> set[str]:
    """Option names of a Prefect CLI command (cyclopts: ``Annotated[..., Parameter(name=("--x",))]``)."""
    names: set[str] = set()
    for param in inspect.signature(fn).parameters.values():
        meta = getattr(param.annotation, "__metadata__", ())
        given = [n for m in meta for n in (getattr(m, "name", None) or ())]
        names |= set(given) or {"--" + param.name.replace("_", "-")}
    return names


def test_compose_commands_use_real_cli_flags(services):
    """The flags given to `ray start`, `prefect server start` and `prefect worker start` exist in the installed CLIs."""
    from prefect.cli import server, worker
    from ray.scripts.scripts import start as ray_start

    ray_flags = {opt for p in ray_start.params for opt in p.opts}
    for name in ("ray-head", "ray-worker"):
        assert _flags(services[name]["command"]) <= ray_flags, name
    assert _flags(services["prefect-server"]["command"]) <= _prefect_options(server.start)
    assert _flags(services["prefect-worker"]["command"]) <= _prefect_options(worker.start)


# ------------------------------------------------------------------------------------------------ kuberay
def test_kuberay_manifests_agree(kuberay):
    cluster, job, secret = kuberay["RayCluster"], kuberay["RayJob"], kuberay["Secret"]
    assert cluster["apiVersion"] == job["apiVersion"] == "ray.io/v1"
    assert job["spec"]["clusterSelector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    assert STORE_ENV <= set(secret["stringData"])
    for value in secret["stringData"].values():
        assert not re.fullmatch(r"[A-Za-z0-9/+]{20,}", value), "placeholders only"

    head = cluster["spec"]["headGroupSpec"]
    pods = [head["template"]] + [g["template"] for g in cluster["spec"]["workerGroupSpecs"]]
    for pod in pods:
        for container in pod["spec"]["containers"]:
            assert container["image"] == "stable-verl:gpu"
            assert {"secretRef": {"name": secret["metadata"]["name"]}} in container["envFrom"]
            assert {"name": "STABLE_VERL_HOME", "value": HOME} in container["env"]
    head_ports = {p["containerPort"] for c in head["template"]["spec"]["containers"] for p in c["ports"]}
    assert {PORTS["gcs"], PORTS["dashboard"]} <= head_ports
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
    for group in cluster["spec"]["workerGroupSpecs"]:
        limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1


def test_rayjob_runs_a_stage_in_the_checkout(kuberay):
    entrypoint = kuberay["RayJob"]["spec"]["entrypoint"]
    assert entrypoint.startswith(f"cd {HOME} && ")
    modules = flow_modules(entrypoint)
    assert modules == {"rl"}
    yaml.safe_load(kuberay["RayJob"]["spec"]["runtimeEnvYAML"])


# ------------------------------------------------------------------------------------------------ commands, docs
def test_every_flow_module_named_in_infra_exists():
    named = set()
    for path in INFRA_FILES:
        named |= flow_modules(path.read_text())
    assert named >= {"rl", "sft"}
    for name in named:
        assert (ROOT / "flows" / f"{name}.py").is_file(), f"python -m flows.{name}: no flows/{name}.py"


def test_flow_commands_in_infra_validate():
    """The `python -m flows.<name> key=value ...` commands in infra/ give overrides the flow's parameter model accepts
    (the model is found through the flow's signature, wherever it lives)."""
    from prefect import Flow

    commands = []
    for path in INFRA_FILES:
        text = path.read_text().replace("\\\n", " ")
        commands += re.findall(r"python3? -m flows\.(\w+)((?:[ \t]+[\w.]+=[^\s`'\"&]+)*)", text)
    commands = [(name, overrides) for name, overrides in commands if overrides.strip()]  # not `flows.x ...`
    assert {name for name, _ in commands} >= {"rl", "sft"}
    for name, overrides in commands:
        module = importlib.import_module(f"flows.{name}")
        (flow_fn,) = [v for v in vars(module).values() if isinstance(v, Flow) and v.fn.__module__ == module.__name__]
        params_cls = typing.get_type_hints(flow_fn.fn)["params"]
        params_cls.from_config(None, overrides.split())  # raises ValueError on an unknown key or a bad value


def test_readme_walks_through_each_file():
    text = README.read_text()
    for path in INFRA_FILES:
        if path != README:
            assert path.relative_to(INFRA).as_posix() in text, f"infra/README.md does not mention {path.name}"
    for command in (
        "docker compose -f infra/docker-compose.yml up",
        "prefect work-pool create --type process stable-verl",
        "prefect deploy --all",
        "prefect deployment run",
        "kubectl apply -f infra/kuberay/raycluster.yaml",
        "kubectl apply -f infra/kuberay/rayjob.yaml",
        "http://localhost:9001",
    ):
        assert command in text, command
    for path in re.findall(r"infra/[\w./-]+\.(?:yml|yaml|md|sh|cpu|gpu|example)\b", text):
        assert (ROOT / path).exists(), f"infra/README.md names {path}, which does not exist"
    assert "Ray Jobs launcher" in text, "the known gap is documented"


def test_no_machine_paths_or_real_looking_keys():
    for path in [*INFRA_FILES, ROOT / ".dockerignore"]:
        text = path.read_text()
        assert not re.search(r"/(work|home|Users|root)/", text), f"machine-specific path in {path.name}"
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), f"real-looking AWS key in {path.name}"
