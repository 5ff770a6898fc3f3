"""The bad-input corpus: every case ends with one line on stderr that names the problem and exit 2, before anything
runs (no Prefect server, no SFT), and the store it pointed at is left exactly as it was.

The cases go through the real entry points in this process (``stable-verl`` = :func:`stable_verl.cli.main`,
``python -m flows.<name>`` = :func:`flows._main.run_flow_main`), against a local store and a real moto S3 server.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import s3fs

from flows._main import run_flow_main
from stable_verl.artifacts import ArtifactStore, RunLayout, list_runs
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.cli import main as cli_main
from tests.support import progress

EXISTING = "sft-terse-0123abcd"  # a complete run already in the store: it must not change


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]
    says: str
    """A piece of the one line: what names the problem."""
    entry: str = "cli"
    """'cli' (stable-verl run <flow>) or a flow module ('flows.sft': python -m flows.sft)."""


CASES = [
    Case("malformed-yaml", ("sft", "--config", "{bad_yaml}"), "is not valid YAML"),
    Case("missing-config", ("sft", "--config", "{tmp}/nope.yaml"), "config file not found"),
    Case("unknown-key-in-yaml", ("sft", "--config", "{unknown_yaml}"), "nonsense"),
    Case("unknown-override", ("sft", "nokey=1"), "nokey"),
    Case("wrong-type", ("sft", "sft.steps=abc"), "sft.steps"),
    Case("negative-sft-steps", ("sft", "sft.steps=-3"), "steps must be > 0"),
    Case("zero-rl-steps", ("rl", "rl.total_steps=0"), "total_steps"),
    Case("negative-lr", ("rl", "rl.lr=-1"), "lr must be >= 0"),
    Case("n-not-dividing-batch", ("rl", "rl.train_batch_size=7", "rl.recipe=minirl_offpolicy"), "multiple of"),
    Case("micro-not-dividing", ("rl", "rl.train_batch_size=30", "rl.recipe=minirl_offpolicy"), "must divide"),
    Case("unknown-recipe", ("rl", "rl.recipe=nope"), "unknown recipe 'nope'"),
    Case("unknown-teacher", ("sft", "sft.teacher=nobody"), "unknown teacher style 'nobody'"),
    Case("console-as-tracker", ("rl", "logging.backends=[console]"), "console and file are always on"),
    Case("unknown-tracker", ("sft", "logging.backends=[neptune]"), "no tracker ['neptune']"),
    Case("dense-model-with-r3", ("rl", "model.kind=dense", "rl.recipe=minirl_r3"), "has no routers"),
    Case("dense-coldstart-with-r2", ("coldstart", "model.kind=dense"), "has no routers"),
    Case("eval-k-zero", ("evaluate", "runs=[" + EXISTING + "]", "eval.k=0"), "eval.k"),
    Case("unknown-benchmark", ("evaluate", "runs=[" + EXISTING + "]", "eval.benchmarks=[aime]"), "benchmark"),
    Case("evaluate-nothing", ("evaluate", "runs=[]"), "runs"),
    Case("missing-init-run", ("rl", "init_run=sft-x-00000000"), "init run sft-x-00000000 does not exist"),
    Case("missing-eval-run", ("evaluate", "runs=[rl-x-00000000]"), "run rl-x-00000000 does not exist"),
    Case("path-as-run-id", ("evaluate", "runs=[../etc]"), "invalid run_id"),
    Case("grid-missing-init", ("stability-grid", "init_run=sft-x-00000000"), "does not exist"),
    Case("grid-n-not-allowed", ("stability-grid", "minibatches=[3]"), "N must be one of"),
    Case("grid-unknown-arm", ("stability-grid", "arms=[nope]"), "unknown recipe 'nope'"),
    Case("store-root-is-a-file", ("sft", "store.root={tmp}/a-file"), "not reachable or not writable"),
    Case("workdir-is-a-file", ("sft", "workdir={tmp}/a-file"), "is not a folder"),
    Case("unreachable-endpoint", ("sft", "store.root=s3://b/p", "store.endpoint_url=http://127.0.0.1:9"), ":9"),
    Case("missing-bucket", ("sft", "store.root=s3://no-such-bucket/p", "store.endpoint_url={moto}"), "no-such-bucket"),
    Case("model-kind-and-path", ("rl", "model.kind=moe", "model.path=x"), "model.path names your own model"),
    Case("model-missing-folder", ("rl", "model.path={tmp}/no-model"), "no-model: no such folder"),
    Case("model-without-config", ("sft", "model.path={tmp}/empty-model"), "no config.json"),
    Case("dense-user-model-with-r2", ("rl", "model.path={dense_model}", "rl.recipe=minirl_r2"), "'qwen3', not a"),
    Case("dense-user-model-grid-r3", ("stability-grid", "model.path={dense_model}", "arms=[minirl_r3]"), "qwen3"),
    Case("hub-model-not-cached", ("rl", "model.path=org/not-cached"), "org/not-cached@main"),
    Case("s3-model-missing", ("rl", "model.path=s3://{bucket}/no-model", "store.endpoint_url={moto}"), "_MANIFEST"),
    Case("flow-module-bad-steps", ("sft.steps=0",), "steps must be > 0", entry="flows.sft"),
    Case("flow-module-missing-run", ("runs=[rl-x-00000000]",), "does not exist", entry="flows.evaluate"),
    # root may write where os.access says so and no file can be made (/proc): a file is created and removed instead
    Case("workdir-takes-no-files", ("workdir=/proc/forbidden",), "cannot create a file in /proc", "flows.coldstart"),
    Case(
        "ray-job-nothing-there",
        ("launcher.kind=ray_job", "launcher.ray_address=http://127.0.0.1:1"),
        "launcher.ray_address http://127.0.0.1:1: no Ray Jobs API answers there",
        entry="flows.sft",
    ),
    Case(
        "top-p-with-train-infer-is",
        ("rl", "rl.recipe=minirl", "rl.overrides=[actor_rollout_ref.rollout.top_p=0.9]"),
        "the IS ratio would be biased",
    ),
    Case("task-file-missing", ("rl", "task.rl_train=[{tmp}/nope.parquet]"), "nope.parquet does not exist"),
    Case("task-columns-missing", ("rl", "task.rl_train=[{tmp}/qa.parquet]"), "needs data_source, prompt"),
    Case(
        "task-sft-columns",
        ("sft", "task.rl_train=[{rl}]", "task.sft.a.train=[{tmp}/qa.parquet]", "sft.teacher=a"),
        "needs 'messages' (chat list) or 'prompt' + 'response'",
    ),
    Case(
        "reward-returns-text",
        ("rl", "task.rl_train=[{rl}]", "task.reward.path={tmp}/text_reward.py"),
        "failed on the first rl_train row: the reward returned str",
    ),
    Case("reward-file-missing", ("rl", "task.rl_train=[{rl}]", "task.reward.path={tmp}/none.py"), "does not exist"),
    Case(
        "reward-no-such-function",
        ("rl", "task.rl_train=[{rl}]", "task.reward.path={tmp}/text_reward.py", "task.reward.name=nope"),
        "has no function 'nope'; set task.reward.name",
    ),
    Case("task-on-shipped-config", ("coldstart", "task.rl_train=[{rl}]"), "task.difficulty, task.hard_difficulty"),
    Case(
        "teacher-not-in-task",
        ("coldstart", "--config", "{tmp}/empty.yaml", "task.rl_train=[{rl}]", "teachers=[terse]"),
        "'terse' is not an SFT init of the task; task.sft has: none",
    ),
    Case(
        "init-checkpoint-missing-folder", ("coldstart", "init_checkpoints.mine={tmp}/no-ckpt"), "init_checkpoints.mine"
    ),
    Case("init-checkpoint-without-config", ("coldstart", "init_checkpoints.mine={tmp}/empty-model"), "no config.json"),
    Case(
        "init-checkpoint-dense-with-r2",
        ("coldstart", "init_checkpoints.mine={dense_model}", "rl.recipe=minirl_r2"),
        "init_checkpoints.mine ({dense_model}) is 'qwen3', not a supported MoE",
    ),
    Case(
        "init-checkpoint-without-weights",
        ("coldstart", "init_checkpoints.mine={dense_model}", "rl.recipe=grpo"),
        "no safetensors weights in it",
    ),
    Case(
        "init-checkpoint-named-as-teacher",
        ("coldstart", "init_checkpoints.terse={dense_model}", "teachers=[terse]"),
        "['terse'] are both a teacher and an init_checkpoints entry",
    ),
    Case(
        "init-checkpoint-s3-missing",
        ("coldstart", "init_checkpoints.mine=s3://{bucket}/no-ckpt", "store.endpoint_url={moto}"),
        "init_checkpoints.mine s3://",
    ),
    Case(
        "benchmark-not-in-task",
        ("evaluate", "runs=[" + EXISTING + "]", "task.rl_train=[{rl}]", "eval.benchmarks=[bench_id]"),
        "no such benchmark dataset ['bench_id']; available: none",
    ),
]


def _snapshot(root: Path) -> dict[str, str]:
    files = (p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture
def world(tmp_path, moto_s3, monkeypatch, tmp_path_factory):
    """A local store holding one complete run, a malformed and an unknown-key YAML file, a plain file, a user's
    dense model folder and an empty one; the Hugging Face hub offline with an empty cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
    store = ArtifactStore(str(tmp_path / "store"))
    run = RunLayout(store, EXISTING)
    RunRecord.started(run, "sft", "terse", 1, 2, None)
    RunRecord.completed(run, [2], 0)
    (tmp_path / "bad.yaml").write_text("rl: [\n")
    (tmp_path / "unknown.yaml").write_text("nonsense: 1\n")
    (tmp_path / "a-file").write_text("not a folder\n")
    (tmp_path / "empty-model").mkdir()
    (tmp_path / "dense-model").mkdir()  # a user's dense Qwen3: the preflight reads config.json alone
    (tmp_path / "dense-model" / "config.json").write_text(
        '{"model_type": "qwen3", "architectures": ["Qwen3ForCausalLM"]}'
    )
    pd.DataFrame({"question": ["1+1?"], "answer": ["2"]}).to_parquet(tmp_path / "qa.parquet")  # not verl's schema
    rl = {
        "data_source": "openai/gsm8k",
        "prompt": [{"role": "user", "content": "1+1?"}],
        "reward_model": {"ground_truth": "2"},
    }
    pd.DataFrame([rl]).to_parquet(tmp_path / "rl.parquet")
    (tmp_path / "empty.yaml").write_text("{}\n")
    (tmp_path / "text_reward.py").write_text(
        "def compute_score(data_source, solution_str, ground_truth, extra_info):\n    return 'right'\n"
    )
    return {
        "dense_model": str(tmp_path / "dense-model"),
        "bucket": moto_s3.bucket,
        "tmp": str(tmp_path),
        "bad_yaml": str(tmp_path / "bad.yaml"),
        "unknown_yaml": str(tmp_path / "unknown.yaml"),
        "moto": moto_s3.endpoint_url,
        "rl": str(tmp_path / "rl.parquet"),
        "store": store,
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(case: Case, world, moto_s3, tmp_path, capsys):
    argv = [a.format(**world) for a in case.argv]
    defaults = [f"workdir={tmp_path / 'work'}", f"store.root={world['store'].uri()}"]
    argv += [d for d in defaults if d.split("=")[0] not in {a.split("=")[0] for a in argv}]
    bucket = s3fs.S3FileSystem(skip_instance_cache=True, **moto_s3.options())
    before, objects_before = _snapshot(tmp_path), bucket.find(moto_s3.bucket)
    if case.entry == "cli":
        config = ["--config", argv.pop(argv.index("--config") + 1)] if "--config" in argv else []
        argv.remove("--config") if "--config" in argv else None
        code = cli_main(["run", argv[0], *config, *argv[1:]])
    else:
        code = run_flow_main(case.entry, argv)
    out = capsys.readouterr()
    lines = out.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and case.says.format(**world) in lines[0], out.err[-3000:]
    assert out.out == ""
    assert _snapshot(tmp_path) == before  # nothing that existed changed, nothing was added
    assert bucket.find(moto_s3.bucket) == objects_before
    assert [r["run_id"] for r in list_runs(world["store"])] == [EXISTING]  # nothing else marked complete


def test_the_corpus_is_at_least_25_cases():
    assert len(CASES) >= 25 and len({c.id for c in CASES}) == len(CASES)


_HEAVY = ("torch", "transformers", "prefect", "verl", "vllm", "ray")
_PROBE = """
import runpy, sys
sys.argv = {argv!r}
try:
    runpy.run_module({module!r}, run_name="__main__", alter_sys=True)
except SystemExit as e:
    code = e.code
print(code, sorted(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize("module", ["flows.coldstart", "stable_verl.cli"])
def test_bad_input_fails_before_the_heavy_imports(module, tmp_path):
    """A fresh interpreter, as a user's shell starts one: the bad workdir is refused (exit 2) with none of torch,
    transformers, Prefect, verl, vLLM or Ray imported, so it fails in about a second, not after their imports."""
    import sys

    argv = ["x", *(["run", "coldstart"] if module == "stable_verl.cli" else []), "workdir=/proc/forbidden"]
    argv.append(f"store.root={tmp_path / 'store'}")
    code = _PROBE.format(argv=argv, module=module, heavy=_HEAVY)
    done = progress.run([sys.executable, "-c", code])
    assert done.stdout.strip() == "2 []", done.stdout + done.stderr[-2000:]
    assert "cannot create a file in /proc" in done.stderr and len(done.stderr.strip().splitlines()) == 1
