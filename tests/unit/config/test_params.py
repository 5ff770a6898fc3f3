"""Flow parameters fail fast with one line; only transient failures are retried."""

from __future__ import annotations

import sys

import pytest

from stable_verl.artifacts import ArtifactStore
from stable_verl.artifacts.retry import NO_RETRY
from stable_verl.config.params import ColdstartParams, EvaluateFlowParams, RLFlowParams, SFTFlowParams
from stable_verl.launch.runner import VerlRunError
from stable_verl.launch.stall import DEFAULT_STALL_S
from stable_verl.launch.transient import is_transient
from stable_verl.train.preflight import InputError, check_jobs_api
from tests.support import progress
from tests.support.s3 import free_port


def test_demo_config_loads_with_overrides():
    p = ColdstartParams.from_config("configs/coldstart.yaml", ["seeds=[0,1]", "eval.k=32"])
    assert p.teachers == ["terse", "stepwise", "verbose"] and p.rl.recipe == "minirl_r2"
    assert all(step % p.rl.save_freq == 0 for step in p.eval.steps) and p.rl.total_steps in p.eval.steps  # saved
    assert p.rl.recipe_config.minibatches == 2 and p.rl.recipe_config.routing_replay == "R2"  # paper §4.5
    assert p.rl.rollout_dtype == "bfloat16" and p.rl.train_dtype == "float32"  # a real train-inference gap
    assert p.rl.format_bonus == 0.0  # exact-match reward only
    assert p.eval.k == 32 and p.seeds == [0, 1]
    sft = p.sft_params("verbose", 1)
    assert isinstance(sft, SFTFlowParams) and sft.sft.teacher == "verbose" and sft.sft_seed == 1
    assert p.rl_params("sft-verbose-00000000", 1).init_run == "sft-verbose-00000000"
    assert EvaluateFlowParams.model_fields["eval"].default_factory().k == 32  # the paper's avg@32 by default


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["rl.recipe=nope"], "unknown recipe 'nope'; available: "),
        (["eval.benchmarks=[bench_nope]"], "no such benchmark dataset ['bench_nope']"),
        (["teachers=[terse,nope]"], "unknown teacher style 'nope'"),
        (["rl.recipe=minirl_offpolicy", "rl.train_batch_size=7"], "multiple of the recipe's minibatches"),
        (["rl.save_freq=-1"], "rl.save_freq must be > 0"),
        (["seeds=[0,0]"], "must be distinct"),
        (["rl.total_steps=abc"], "invalid config at rl.total_steps"),
        (["no_such_key=1"], "invalid config at no_such_key"),
        (["rl.lr=-1"], "RLStage.lr must be >= 0 and finite, got -1.0"),
        (["rl.lr=nan"], "RLStage.lr must be >= 0 and finite, got nan"),
        (["sft.lr=0"], "SFTStage.lr must be > 0 and finite, got 0.0"),
        (
            ["model.kind=dense", "rl.recipe=minirl_r3"],
            "invalid config: rl.recipe 'minirl_r3' replays expert routes (R3) but model.kind='dense' has no routers",
        ),
        (["model.kind=dense", "rl.recipe=minirl_r2"], "replays expert routes (R2)"),
    ],
)
def test_bad_input_is_one_line_naming_the_problem(overrides, message):
    with pytest.raises(ValueError) as err:
        ColdstartParams.from_config("configs/coldstart.yaml", overrides)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_rl_stages_checkpoint_every_step_unless_told_otherwise():
    assert RLFlowParams.from_config(None, ["rl.total_steps=2"]).rl.save_freq == 1
    assert RLFlowParams.from_config(None, ["rl.save_freq=2"]).rl.save_freq == 2


def test_missing_config_file_and_required_runs():
    with pytest.raises(ValueError, match="config file not found: nope.yaml"):
        RLFlowParams.from_config("nope.yaml", [])
    with pytest.raises(ValueError, match="invalid config: nothing to evaluate: give runs"):
        EvaluateFlowParams.from_config(None, [])


def test_flow_module_exits_2_with_one_line_on_bad_input():
    out = progress.run([sys.executable, "-m", "flows.coldstart", "rl.recipe=nope"])
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "python -m flows.coldstart: error: invalid config at rl: unknown recipe"
    )


def test_network_and_s3_hiccups_are_transient_bad_input_and_verl_failures_are_not(moto_s3):
    unreachable = ArtifactStore(
        f"s3://{moto_s3.bucket}/x",
        moto_s3.options()
        | {
            "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{free_port()}"},
            "config_kwargs": {"retries": {"max_attempts": 1}},  # nor botocore's own retries
        },
        retry=NO_RETRY,  # the error's class is the point here, not the store's backoff (tests/unit/artifacts)
    )
    with pytest.raises(Exception) as err:
        unreachable.write_text("probe", "x")
    assert is_transient(err.value)  # ArtifactStoreError <- EndpointConnectionError <- ConnectionRefusedError

    from botocore.exceptions import ClientError

    slow_down = ClientError({"Error": {"Code": "SlowDown", "Message": "reduce your request rate"}}, "PutObject")
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
    assert is_transient(slow_down) and not is_transient(denied)
    assert not is_transient(VerlRunError("verl main_ppo exited with code 1"))
    assert not is_transient(ValueError("unknown recipe"))
    assert not is_transient(None)
    # Bad input found by probing the world (an address with no cluster) is input, not a hiccup: never retried.
    with pytest.raises(InputError) as bad_address:
        check_jobs_api("http://127.0.0.1:1")
    assert not is_transient(bad_address.value)
    try:
        raise InputError("launcher.ray_address: no Ray Jobs API answers there") from ConnectionRefusedError(111)
    except InputError as e:
        assert not is_transient(e)  # its cause is a network error; the input is what is wrong


def test_rl_lr_zero_is_the_no_update_control_and_a_dense_model_takes_a_recipe_without_replay():
    assert ColdstartParams.from_config("configs/coldstart.yaml", ["rl.lr=0"]).rl.lr == 0.0
    dense = ColdstartParams.from_config("configs/coldstart.yaml", ["model.kind=dense", "rl.recipe=minirl"])
    assert dense.model.kind == "dense" and dense.rl.recipe_config.routing_replay == "disabled"


def test_a_malformed_yaml_file_is_one_line_with_its_line_and_column(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl:\n  lr: [1, 2\n")  # an unclosed list
    for load in (lambda: ColdstartParams.from_config(str(bad), []), lambda: RLFlowParams.from_config(str(bad), [])):
        with pytest.raises(ValueError) as err:
            load()
        message = str(err.value)
        assert message.startswith(f"config file {bad} is not valid YAML (line 3, column 1): expected ','")
        assert "\n" not in message


@pytest.mark.parametrize("name", ["sft", "rl", "coldstart", "stability-grid", "evaluate"])
def test_field_docstrings_reach_prefects_parameter_form(name):
    """Prefect renders a flow's parameter form from this schema; each field's docstring is its help text."""
    from prefect.utilities.callables import parameter_schema

    from flows.registry import FLOWS

    schema = parameter_schema(FLOWS[name].flow(name).fn).model_dump_for_openapi()
    defs = schema["definitions"]
    params = defs[FLOWS[name].params]["properties"]
    assert params["store"].get("$ref") or params["store"].get("allOf")  # nested models are referenced
    assert defs["StoreParams"]["properties"]["root"]["description"].startswith("A folder or ``s3://bucket/prefix``")
    described = [f for model in defs.values() for f in model.get("properties", {}).values() if f.get("description")]
    assert len(described) >= 10, described
    if "rl" in params:
        assert defs["RLStage"]["properties"]["total_steps"]["description"] == "Training steps (rollout batches)."


def test_sft_save_freq_is_a_resume_setting_outside_the_run_id():
    from stable_verl.train.stages import sft_run_id

    default, periodic = SFTFlowParams.from_config(None, []), SFTFlowParams.from_config(None, ["sft.save_freq=5"])
    assert default.sft.save_freq == -1 and sft_run_id(default) == sft_run_id(periodic)
    with pytest.raises(ValueError, match=r"sft.save_freq must be > 0, or -1 \(the last step only\), got 0"):
        SFTFlowParams.from_config(None, ["sft.save_freq=0"])


def test_every_process_limit_measures_progress_by_default():
    # SFT, RL and evaluation processes fail on a stall (no step, no new line, no CPU), never on a wall-clock guess:
    # a slow machine is not a hung run. The total limit stays available and validated.
    p = ColdstartParams()
    for where, stage in (("sft", p.sft), ("rl", p.rl), ("eval", p.eval)):
        assert (stage.stall_s, stage.timeout_s) == (DEFAULT_STALL_S, None), where
    assert EvaluateFlowParams.from_config(None, ["runs=[x]", "eval.timeout_s=900"]).eval.timeout_s == 900
    with pytest.raises(ValueError, match="stall_s"):
        EvaluateFlowParams.from_config(None, ["runs=[x]", "eval.stall_s=0"])
