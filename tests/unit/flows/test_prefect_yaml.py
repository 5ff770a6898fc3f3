"""prefect.yaml: its deployments name real flows, their parameters validate, and the schedule is a real cron.

Nothing here talks to a Prefect server: the file is parsed with yaml and checked with the same models and
validators `prefect deploy` and a flow run use (Prefect's prefect.yaml model, ``Flow.validate_parameters``,
``CronSchedule``).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import yaml

from flows.registry import FLOWS

ROOT = Path(__file__).resolve().parents[3]
PREFECT_YAML = ROOT / "prefect.yaml"
DOCS = ROOT / "infra" / "prefect.md"
POOL = "stable-verl"
ENTRYPOINTS = {name: spec.entrypoint for name, spec in FLOWS.items()}  # the flow registry: one declaration each


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(PREFECT_YAML.read_text())


@pytest.fixture(scope="module")
def deployments(spec) -> dict[str, dict[str, Any]]:
    return {d["name"]: d for d in spec["deployments"]}


def _flow(entrypoint: str):
    path, function = entrypoint.split(":")
    module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
    return getattr(module, function)


def test_prefect_accepts_the_file(spec):
    models = pytest.importorskip("prefect.cli.deploy._models", reason="Prefect moved its prefect.yaml model")
    parsed = models.PrefectYamlModel.model_validate(spec)
    assert [d.name for d in parsed.deployments] == list(ENTRYPOINTS)


def test_one_deployment_per_flow_on_the_process_pool(deployments):
    assert {name: d["entrypoint"] for name, d in deployments.items()} == ENTRYPOINTS
    for name, deployment in deployments.items():
        assert deployment["work_pool"]["name"] == POOL, name
        # The CLI's `stable-verl run <name>` runs the same function the deployment does.
        flow = FLOWS[name]
        assert ENTRYPOINTS[name] == f"{flow.module.replace('.', '/')}.py:{flow.function}"


def test_work_pool_job_variables_exist_in_the_process_worker_template(deployments):
    from prefect.workers.process import ProcessWorker

    known = set(ProcessWorker.get_default_base_job_template()["variables"]["properties"])
    for name, deployment in deployments.items():
        assert set(deployment["work_pool"].get("job_variables", {})) <= known, name


def test_runs_start_in_the_checkout(spec):
    (step,) = spec["pull"]
    assert step == {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $STABLE_VERL_HOME }}"}}
    from prefect.deployments.steps import set_working_directory  # the step exists in this Prefect

    assert callable(set_working_directory)


@pytest.mark.parametrize("name", list(ENTRYPOINTS))
def test_entrypoints_are_prefect_flows(deployments, name):
    from prefect import Flow

    entrypoint = deployments[name]["entrypoint"]
    assert (ROOT / entrypoint.split(":")[0]).is_file(), entrypoint
    flow = _flow(entrypoint)
    assert isinstance(flow, Flow), f"{entrypoint} is not decorated with @flow"


@pytest.mark.parametrize("name", list(ENTRYPOINTS))
def test_parameters_validate_against_the_flow(deployments, name):
    """What Prefect does when a run of the deployment (or of its schedules) starts."""
    deployment = deployments[name]
    flow = _flow(deployment["entrypoint"])
    sets = [deployment["parameters"]] + [s.get("parameters", {}) for s in deployment.get("schedules") or []]
    for parameters in sets:
        validated = flow.validate_parameters({**deployment["parameters"], **parameters})
        params_cls = FLOWS[name].params_class(name)
        assert isinstance(validated["params"], params_cls)


def _recipes(obj: Any) -> list[str]:
    if isinstance(obj, dict):
        found = [obj["recipe"]] if isinstance(obj.get("recipe"), str) else []
        return found + [r for v in obj.values() for r in _recipes(v)]
    if isinstance(obj, list):
        return [r for v in obj for r in _recipes(v)]
    return []


def test_recipes_point_at_config_files(deployments):
    recipes = _recipes([d["parameters"] for d in deployments.values()])
    assert recipes, "no deployment names a recipe"
    for recipe in recipes:
        assert (ROOT / "configs" / "recipes" / f"{recipe}.yaml").is_file(), recipe


def test_nightly_evaluation_schedule(deployments):
    (schedule,) = deployments["evaluate"]["schedules"]
    assert schedule["timezone"] == "UTC" and schedule["slug"] == "nightly-eval"
    assert schedule["parameters"]["params"]["eval"]["steps"] == "all"
    # it ships active, with the selector (every checkpoint not yet evaluated) instead of run ids to fill in
    assert schedule["active"] is True and schedule["parameters"]["params"]["select"] == {}
    assert "runs" not in schedule["parameters"]["params"]
    try:
        from croniter import croniter
    except ImportError:
        croniter = None
    if croniter is not None:
        assert croniter.is_valid(schedule["cron"])
    from prefect.client.schemas.schedules import CronSchedule

    cron = CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # raises on a bad cron / zone
    assert cron.cron == "0 3 * * *"  # once a day, 03:00
    for bad in ("0 3 * *", "61 3 * * *"):
        with pytest.raises(ValueError):
            CronSchedule(cron=bad, timezone="UTC")
    for others in ("sft", "rl", "coldstart", "stability-grid"):
        assert not deployments[others].get("schedules"), f"{others} should only run on demand"


def test_docs_use_the_pool_and_deployment_names(deployments):
    docs = DOCS.read_text()
    for command in (
        "prefect server start",
        f"prefect work-pool create --type process {POOL}",
        "prefect deploy --all",
        f"prefect worker start --pool {POOL}",
        "stable-verl runs list",
    ):
        assert command in docs, command
    for deployment in deployments.values():
        flow = _flow(deployment["entrypoint"])
        assert f"{flow.name}/{deployment['name']}" in docs, f"{flow.name}/{deployment['name']} not documented"
