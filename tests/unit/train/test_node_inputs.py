"""Stage inputs on a node from the store (``verl_ext.inputs``) and what a cluster job names (``node_inputs``).

Real stores: a local folder, and moto S3 for the path a node takes (the store from the job's environment). The
concurrency test runs real processes that share one node folder.
"""

from __future__ import annotations

import json
import multiprocessing
import shlex
import time
from pathlib import Path

import pandas as pd
import pytest

from stable_verl.artifacts import ArtifactStore
from stable_verl.artifacts.errors import ArtifactIntegrityError, IncompleteArtifactError
from stable_verl.cli import main
from stable_verl.config.params import RLFlowParams, SFTFlowParams
from stable_verl.train.assets import planned_assets
from stable_verl.train.stages import rl_job, sft_job
from stable_verl.verl_ext import inputs
from stable_verl.verl_ext.inputs import MARK, StoreInput
from stable_verl.verl_ext.store_sync import ENV_ENDPOINT, ENV_NODE_DIR, ENV_ROOT

FILES = {"models/tiny/config.json": b'{"model_type": "x"}', "models/tiny/w.safetensors": b"w" * 1000}
FILES |= {"data/train.parquet": b"rows", "assets.json": b'{"local": "/flow/path"}'}


def _built(tmp_path: Path) -> Path:
    root = tmp_path / "built"
    for rel, data in FILES.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _published(tmp_path: Path, store: ArtifactStore, prefix: str = "inputs/assets/abc") -> StoreInput:
    rels = [r for r in FILES if r != "assets.json"]
    assert inputs.publish(store, _built(tmp_path), rels, prefix)
    assert not inputs.publish(store, _built(tmp_path), rels, prefix)  # uploaded once: the manifest exists
    return StoreInput(prefix)


def test_a_missing_input_is_downloaded_verified_and_then_found_in_place(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    inp = _published(tmp_path, store)
    node = tmp_path / "node"
    dest = inputs.materialise(store, inp, node)
    assert dest == node / "store" / "inputs/assets/abc"
    assert (dest / "models/tiny/w.safetensors").read_bytes() == FILES["models/tiny/w.safetensors"]
    assert not (dest / "assets.json").exists()  # the flow's own marker (its paths) stays on the flow's machine
    mark = json.loads((dest / MARK).read_text())
    assert mark["source"] == inp.prefix and len(mark["files"]) == 3
    assert sorted(p.name for p in dest.parent.iterdir()) == ["abc", "abc.lock"]  # no temporary folder left
    store.delete("inputs/assets/abc", recursive=True)
    assert inputs.materialise(store, inp, node) == dest  # present: nothing is read from the store


def test_only_the_named_folder_of_a_checkpoint_is_materialised(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    inp = _published(tmp_path, store, "runs/sft-x/checkpoints/global_step_2")
    dest = inputs.materialise(store, StoreInput(inp.prefix, "models/tiny"), tmp_path / "node")
    assert dest.name == "tiny" and sorted(p.name for p in dest.iterdir()) == sorted(
        ["config.json", "w.safetensors", MARK]
    )
    assert not (dest.parent.parent / "data").exists()


def test_a_corrupt_file_is_rejected_and_nothing_is_left_in_place(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    inp = _published(tmp_path, store)
    (tmp_path / "store" / inp.prefix / "data/train.parquet").write_bytes(b"ROWS")  # same size, other bytes
    with pytest.raises(ArtifactIntegrityError, match=r"data/train\.parquet: expected 4 bytes sha256 .* got 4 bytes"):
        inputs.materialise(store, inp, tmp_path / "node")
    assert list((tmp_path / "node/store/inputs/assets").iterdir()) == [tmp_path / "node/store/inputs/assets/abc.lock"]
    with pytest.raises(IncompleteArtifactError, match="no valid _MANIFEST.json"):
        inputs.materialise(store, StoreInput("inputs/assets/none"), tmp_path / "node")


class _CountingStore(ArtifactStore):
    """A real local store that counts its directory downloads in a counter shared by processes."""

    counter = None

    def get_dir(self, *args, **kwargs):
        with self.counter.get_lock():
            self.counter.value += 1
        time.sleep(0.5)  # a slow download: the others arrive while it runs
        return super().get_dir(*args, **kwargs)


def _materialise_in_child(root: str, prefix: str, node: str, counter) -> None:
    _CountingStore.counter = counter
    inputs.materialise(_CountingStore(root), StoreInput(prefix), node)


def test_concurrent_callers_download_once_and_all_find_it(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    inp = _published(tmp_path, store)
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("i", 0)
    args = (str(tmp_path / "store"), inp.prefix, str(tmp_path / "node"), counter)
    children = [ctx.Process(target=_materialise_in_child, args=args) for _ in range(4)]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=60)  # forked, four copies of a few local bytes: a bound on an instant operation
    assert [c.exitcode for c in children] == [0, 0, 0, 0]
    assert counter.value == 1
    assert (tmp_path / "node/store/inputs/assets/abc/data/train.parquet").read_bytes() == b"rows"


def test_a_node_materialises_what_the_environment_lists_from_s3(tmp_path, moto_s3):
    store = moto_s3.store()
    inp = _published(tmp_path, store)
    env = {ENV_ROOT: store.uri(), ENV_ENDPOINT: moto_s3.endpoint_url, **inputs.inputs_env([inp, inp])}
    assert json.loads(env[inputs.ENV_INPUTS]) == [{"prefix": inp.prefix, "folder": ""}]
    with pytest.raises(inputs.MissingNodeDir, match="STABLE_VERL_NODE_DIR"):
        inputs.materialise_from_env(env)
    [dest] = inputs.materialise_from_env({**env, ENV_NODE_DIR: str(tmp_path / "node")})
    assert (dest / "models/tiny/config.json").read_bytes() == FILES["models/tiny/config.json"]
    assert inputs.materialise_from_env({}) == []  # a job without inputs (local runs)


def _cluster(*overrides: str) -> list[str]:
    return ["launcher.kind=ray_job", "launcher.ray_address=http://h:8265", "launcher.device=cpu", *overrides]


def test_cluster_jobs_name_node_paths_and_list_their_store_inputs(tmp_path):
    workdir = tmp_path / "work"
    p = RLFlowParams.from_config(None, _cluster(f"workdir={workdir}"))
    assets = planned_assets(workdir, p.model, p.task, p.seed)
    job = rl_job(p, assets, None, None)
    argv = job.argv(workdir / "runs" / "rl-x" / "checkpoints")
    assert not [a for a in argv[1:] if str(workdir) in a]
    node = "${oc.env:STABLE_VERL_NODE_DIR}/store/inputs/assets/" + assets.model_dir.parent.parent.name
    assert f"actor_rollout_ref.model.path={node}/models/tiny-moe" in argv
    assert f"data.train_files={node}/data/rl_train.parquet" in argv
    assert "trainer.default_local_dir=${oc.env:STABLE_VERL_NODE_DIR}/rl-x/checkpoints" in argv
    assert json.loads(job.env[inputs.ENV_INPUTS]) == [{"prefix": node.split("/store/")[1], "folder": ""}]

    parent = "runs/sft-x/checkpoints/global_step_2"
    argv = rl_job(p, assets, None, parent, "huggingface").argv(workdir / "runs" / "rl-y" / "checkpoints")
    assert f"actor_rollout_ref.model.path=${{oc.env:STABLE_VERL_NODE_DIR}}/store/{parent}/huggingface" in argv

    local = RLFlowParams.from_config(None, [f"workdir={workdir}"])  # the local launcher: the flow's own files
    argv = rl_job(local, assets, None, None).argv(workdir / "c")
    assert (
        f"actor_rollout_ref.model.path={assets.model_dir}" in argv
        and rl_job(local, assets, None, None).node_inputs is None
    )


def test_an_sft_cluster_job_runs_verl_under_the_node_entrypoint(tmp_path):
    workdir = tmp_path / "work"
    p = SFTFlowParams.from_config(None, _cluster(f"workdir={workdir}", "sft_seed=1"))
    assets = planned_assets(workdir, p.model, p.task, p.seed)
    job = sft_job(p, assets, "sft-x", workdir)
    argv = job.argv(workdir / "runs" / "sft-x" / "checkpoints")
    assert argv[1:5] == ["-m", "stable_verl.train.node_sft", "--", "-m"] and job.store_sync
    assert not [a for a in argv[1:] if str(workdir) in a]
    assert "trainer.default_local_dir=${oc.env:STABLE_VERL_NODE_DIR}/sft-x/checkpoints" in argv
    prefixes = [i["prefix"] for i in json.loads(job.env[inputs.ENV_INPUTS])]
    assert prefixes[1].endswith("-seeded/sft_stepwise_train_seed1")  # the seeded copy is an input of its own


def test_plan_prints_the_cluster_command_with_node_paths(capsys, tmp_path):
    assert main(["plan", "rl", *_cluster(f"workdir={tmp_path}")]) == 0
    command = shlex.split(capsys.readouterr().out.split("\n", 1)[1].replace("\\\n", " "))
    verl = command[command.index("--") + 1 :]
    assert not [a for a in verl if str(tmp_path) in a]
    assert [a for a in verl if a.startswith("actor_rollout_ref.model.path=${oc.env:STABLE_VERL_NODE_DIR}/store/")]


@pytest.mark.parametrize("kind", ["sft", "rl"])
def test_verls_config_takes_the_node_paths_and_resolves_them_on_the_node(kind, tmp_path, monkeypatch):
    from hydra import compose, initialize_config_module

    workdir = tmp_path / "work"
    if kind == "sft":
        p = SFTFlowParams.from_config(None, _cluster(f"workdir={workdir}"))
        argv = sft_job(p, planned_assets(workdir, p.model, p.task, p.seed), "sft-x", workdir).argv(workdir / "c")
        name, overrides, model_key = "sft_trainer_engine", argv[argv.index("verl.trainer.sft_trainer") + 1 :], "model"
    else:
        p = RLFlowParams.from_config(None, _cluster(f"workdir={workdir}"))
        argv = rl_job(
            p, planned_assets(workdir, p.model, p.task, p.seed), None, "runs/s/checkpoints/global_step_2", "huggingface"
        ).argv(workdir / "rl-x" / "c")
        name, overrides, model_key = "ppo_trainer", argv[3:], "actor_rollout_ref.model"
    monkeypatch.setenv("STABLE_VERL_NODE_DIR", "/node-local")
    with initialize_config_module("verl.trainer.config", version_base=None):
        cfg = compose(name, overrides=overrides)
    from omegaconf import OmegaConf

    OmegaConf.resolve(cfg)  # what verl's TaskRunner does, on the node
    model = OmegaConf.select(cfg, f"{model_key}.path")
    assert model.startswith("/node-local/store/") and "${" not in model
    assert cfg.trainer.default_local_dir.startswith("/node-local/") and str(workdir) not in str(cfg.data.train_files)


def test_a_download_cut_short_by_a_killed_process_is_cleaned_up_and_redone(tmp_path):
    store = ArtifactStore(tmp_path / "store")
    inp = _published(tmp_path, store)
    stale = tmp_path / "node/store/inputs/assets/.abc-dead1234"
    (stale / "data").mkdir(parents=True)
    (stale / "data/train.parquet").write_bytes(b"ro")  # half a file, no completion
    dest = inputs.materialise(store, inp, tmp_path / "node")
    assert (dest / "data/train.parquet").read_bytes() == b"rows" and not stale.exists()


USER_REWARD = """
def score(data_source, solution_str, ground_truth, extra_info=None):
    return {"score": float(solution_str.strip().endswith(ground_truth)), "chars": float(len(solution_str))}
"""


def test_a_reward_file_reaches_the_nodes_through_the_store_and_verl_loads_the_nodes_copy(tmp_path, monkeypatch):
    from omegaconf import OmegaConf
    from verl.trainer.ppo.reward import get_custom_reward_fn

    from stable_verl.train.node_inputs import code_key

    user, workdir, store = tmp_path / "user", tmp_path / "work", ArtifactStore(tmp_path / "store")
    user.mkdir()
    reward = user / "my_reward.py"
    reward.write_text(USER_REWARD)
    row = {"data_source": "openai/gsm8k", "prompt": [{"role": "user", "content": "1+1?"}]}
    pd.DataFrame([{**row, "reward_model": {"ground_truth": "2"}}]).to_parquet(user / "rl.parquet")
    task = [f"task.rl_train=[{user / 'rl.parquet'}]", f"task.reward.path={reward}", "task.reward.name=score"]
    p = RLFlowParams.from_config(None, _cluster(f"workdir={workdir}", *task))
    job = rl_job(p, planned_assets(workdir, p.model, p.task, p.seed), None, None)
    argv = job.argv(workdir / "runs" / "rl-x" / "checkpoints")

    # The command names the node's copy, content-addressed in the store; nothing of the flow's machine.
    prefix = f"inputs/code/{code_key(reward)}"
    assert f"reward.custom_reward_function.path=${{oc.env:STABLE_VERL_NODE_DIR}}/store/{prefix}/my_reward.py" in argv
    assert not [a for a in argv[1:] if str(tmp_path) in a]
    assert {"prefix": prefix, "folder": ""} in json.loads(job.env[inputs.ENV_INPUTS])
    local, rels = job.node_inputs.uploads[prefix]
    assert (local, rels) == (user, ["my_reward.py"])  # the file alone, not its folder
    assert inputs.publish(store, local, rels, prefix) and not inputs.publish(store, local, rels, prefix)
    # One input per content: the same file elsewhere is the same prefix, an edited one a new prefix.
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "my_reward.py").write_text(USER_REWARD)
    assert code_key(tmp_path / "copy" / "my_reward.py") == code_key(reward)
    (tmp_path / "copy" / "my_reward.py").write_text(USER_REWARD + "# edited\n")
    assert code_key(tmp_path / "copy" / "my_reward.py") != code_key(reward)

    # On a node: materialised from the store (checked against its manifest), then verl's own loader finds it there.
    node = tmp_path / "node"
    env = {ENV_ROOT: store.uri(), ENV_NODE_DIR: str(node), **inputs.inputs_env([StoreInput(prefix)])}
    [dest] = inputs.materialise_from_env(env)
    assert (dest / "my_reward.py").read_bytes() == reward.read_bytes()
    reward.unlink()  # the flow's copy is not what the node reads
    from hydra import compose, initialize_config_module

    monkeypatch.setenv(ENV_NODE_DIR, str(node))
    with initialize_config_module("verl.trainer.config", version_base=None):
        cfg = compose("ppo_trainer", overrides=argv[3:])
    OmegaConf.resolve(cfg)  # what verl's TaskRunner does, on the node
    assert cfg.reward.custom_reward_function.path == str(dest / "my_reward.py")
    assert get_custom_reward_fn(cfg)("openai/gsm8k", "so #### 2", "2", {}) == {"score": 1.0, "chars": 9.0}


def test_a_local_run_names_the_reward_file_where_it_is(tmp_path):
    (tmp_path / "r.py").write_text(USER_REWARD)
    pd.DataFrame(
        [{"data_source": "d", "prompt": [{"role": "user", "content": "q"}], "reward_model": {"ground_truth": "2"}}]
    ).to_parquet(tmp_path / "rl.parquet")
    overrides = [f"workdir={tmp_path / 'w'}", f"task.rl_train=[{tmp_path / 'rl.parquet'}]"]
    p = RLFlowParams.from_config(None, [*overrides, f"task.reward.path={tmp_path / 'r.py'}"])
    job = rl_job(p, planned_assets(tmp_path / "w", p.model, p.task, p.seed), None, None)
    assert f"reward.custom_reward_function.path={tmp_path / 'r.py'}" in job.argv(tmp_path / "c")
    assert job.node_inputs is None


def test_an_evaluations_benchmark_files_reach_a_node_once_and_its_worker_reads_them_there(tmp_path):
    from stable_verl.train.node_inputs import BENCHMARKS_PREFIX, NodeInputs

    folder = tmp_path / "bench"
    folder.mkdir()
    files = {"bench_id": folder / "bench_id-first4.parquet", "bench_hard": folder / "bench_hard-first4.parquet"}
    for name, path in files.items():
        pd.DataFrame({"prompt": [name]}).to_parquet(path)
    store = ArtifactStore(str(tmp_path / "store"))
    nodes = NodeInputs()
    named = nodes.benchmarks(files)
    [inp] = nodes.inputs
    assert inp.prefix.startswith(f"{BENCHMARKS_PREFIX}/")
    assert named == {n: Path(inputs.node_expr(inp, p.name)) for n, p in files.items()}
    assert nodes.publish(store) == [inp.prefix] and NodeInputs().benchmarks(files) == named  # content-addressed
    assert nodes.publish(store) == []  # once per store

    node = tmp_path / "node"
    inputs.materialise(store, inp, node)
    on_node = inputs.resolve_node_paths([f"bench_id={named['bench_id']}"], node)[0].split("=", 1)[1]
    assert pd.read_parquet(on_node)["prompt"].tolist() == ["bench_id"]
    with pytest.raises(ValueError, match="share one folder"):
        NodeInputs().benchmarks({"a": files["bench_id"], "b": tmp_path / "elsewhere.parquet"})
