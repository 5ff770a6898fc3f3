"""A user's own base model (``model.path``): parsed, named in the plan, content-addressed in run ids, resolved from a
local folder, a manifested ``s3://`` folder (a real moto server) or a hand-made offline Hugging Face cache.

The model is what a user has: a tiny Qwen3-MoE written with ``save_pretrained`` beside a tokenizer with a chat
template, given on the command line exactly as a user would (``stable-verl plan rl model.path=<dir>``).
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import pytest
import yaml

from stable_verl.artifacts import ArtifactStore
from stable_verl.cli import main
from stable_verl.config.params import RLFlowParams, SFTFlowParams
from stable_verl.models.hf import HFModel
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from stable_verl.train import model_source
from stable_verl.train.plan import plan_rl, plan_sft
from stable_verl.train.stages import rl_run_id, sft_run_id

SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory, tokenizer) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("user") / "my-model", TinyModelSpec(), tokenizer, seed=3)


@pytest.fixture
def user_model(saved_model, tmp_path) -> Path:
    """A private copy of the user's folder (tests change its files)."""
    return Path(shutil.copytree(saved_model, tmp_path / "my-model"))


def _plan(capsys, *argv: str) -> tuple[str, list[str]]:
    """``stable-verl plan <argv>``: (first stage's run id, its verl command)."""
    assert main(["plan", *argv]) == 0
    out = capsys.readouterr().out
    header, command = out.split("\n", 1)
    return header.split()[-1], shlex.split(command.split("\n#")[0].replace("\\\n", " "))


def test_model_path_selects_a_user_model_and_the_tiny_keys_cannot_be_mixed_in():
    assert isinstance(RLFlowParams.from_config(None, []).model, TinyModelSpec)
    assert RLFlowParams.from_config(None, ["model.path=/m", "model.trust_remote_code=true"]).model == HFModel(
        "/m", trust_remote_code=True
    )
    with pytest.raises(ValueError, match=r"^invalid config at model: model.path names your own model.*model.kind"):
        RLFlowParams.from_config(None, ["model.kind=moe", "model.path=x"])
    with pytest.raises(ValueError, match=r"^invalid config at model: model.revision applies to hub ids"):
        RLFlowParams.from_config(None, ["model.path=/m", "model.revision=v1"])
    assert HFModel("org/name").source == "hub" and HFModel("s3://b/m").source == "s3"
    assert HFModel("./org/name").source == "local" and HFModel("name").source == "local"


def test_plan_names_the_user_model_and_its_ids_follow_its_files(user_model, tmp_path, capsys):
    args = ("rl", f"model.path={user_model}", f"workdir={tmp_path / 'work'}")
    run, argv = _plan(capsys, *args)
    assert f"actor_rollout_ref.model.path={user_model}" in argv
    assert not [a for a in argv if "trust_remote_code" in a or "custom_chat_template" in a]  # verl's defaults
    assert _plan(capsys, *args)[0] == run  # stable across invocations
    assert run != _plan(capsys, "rl", f"workdir={tmp_path / 'work'}")[0]  # not the tiny model's id

    ids = {run}
    weights = user_model / "model.safetensors"
    with weights.open("ab") as fh:  # one byte more in the weights: their size changes
        fh.write(b"\0")
    ids.add(_plan(capsys, *args)[0])
    weights.rename(user_model / "model-00001.safetensors")  # a weight file's name
    ids.add(_plan(capsys, *args)[0])
    config = user_model / "config.json"
    config.write_text(
        config.read_text().replace('"num_local_experts": 8', '"num_local_experts": 9')
    )  # one byte of config
    ids.add(_plan(capsys, *args)[0])
    assert len(ids) == 4
    (user_model / ".cache").mkdir()  # a download tool's own files are not the model
    (user_model / ".cache" / "x.lock").write_text("x")
    assert _plan(capsys, *args)[0] in ids


def test_a_user_model_sft_and_its_verl_settings(user_model, tmp_path):
    template = tmp_path / "template.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}{% endfor %}")
    base = [f"model.path={user_model}", f"workdir={tmp_path / 'w'}"]
    p = SFTFlowParams.from_config(None, [*base, "model.trust_remote_code=true", f"model.chat_template={template}"])
    stage = plan_sft(p)
    assert f"model.path={user_model}" in stage.argv and "model.trust_remote_code=True" in stage.argv
    assert "model.custom_chat_template=${oc.env:STABLE_VERL_CHAT_TEMPLATE}" in stage.argv
    plain = SFTFlowParams.from_config(None, base)
    assert sft_run_id(p) != sft_run_id(plain)  # the template changes what is trained; trust_remote_code does not
    as_text = HFModel(str(user_model), chat_template=template.read_text())  # the file's text, given inline
    assert sft_run_id(p) == sft_run_id(p.model_copy(update={"model": as_text}))
    assert sft_run_id(SFTFlowParams.from_config(None, [*base, "model.trust_remote_code=true"])) == sft_run_id(plain)

    from stable_verl.train.assets import planned_assets
    from stable_verl.train.stages import sft_job

    job = sft_job(p, planned_assets(Path(p.workdir), p.model, p.task, p.seed), "sft-x", Path(p.workdir))
    assert job.env["STABLE_VERL_CHAT_TEMPLATE"] == template.read_text()


def test_verl_takes_the_user_model_settings(user_model, tmp_path, monkeypatch):
    """verl's own Hydra config accepts the keys, and the template arrives as text where verl resolves it."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    template = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
    config = tmp_path / "mine.yaml"  # inline Jinja goes in a YAML file (a dotlist cannot hold it)
    model = {"path": str(user_model), "trust_remote_code": True, "chat_template": template}
    config.write_text(yaml.safe_dump({"model": model, "workdir": str(tmp_path)}))
    p = RLFlowParams.from_config(str(config), [])
    argv = plan_rl(p).argv
    monkeypatch.setenv("STABLE_VERL_CHAT_TEMPLATE", template)
    with initialize_config_module("verl.trainer.config", version_base=None):
        cfg = compose("ppo_trainer", overrides=argv[3:])
    OmegaConf.resolve(cfg)
    model = cfg.actor_rollout_ref.model
    assert model.path == str(user_model) and model.trust_remote_code and model.custom_chat_template == template
    assert cfg.data.trust_remote_code

    sft = plan_sft(SFTFlowParams.from_config(str(config), [])).argv
    with initialize_config_module("verl.trainer.config", version_base=None):
        cfg = compose("sft_trainer_engine", overrides=sft[sft.index("verl.trainer.sft_trainer") + 1 :])
    OmegaConf.resolve(cfg)
    assert cfg.model.path == str(user_model) and cfg.model.trust_remote_code
    assert cfg.model.custom_chat_template == template


def test_an_s3_model_is_a_manifested_folder_downloaded_and_checked(user_model, moto_s3, tmp_path, capsys):
    store = moto_s3.store()
    store.put_dir(user_model, "models/my")
    uri = store.uri("models/my")
    args = ("rl", f"model.path={uri}", f"store.endpoint_url={moto_s3.endpoint_url}", f"workdir={tmp_path / 'w'}")
    run, argv = _plan(capsys, *args)
    assert _plan(capsys, *args)[0] == run
    model = HFModel(uri)
    local = model_source.resolve_model_dir(model, tmp_path / "w", moto_s3.endpoint_url)
    assert f"actor_rollout_ref.model.path={local}" in argv  # the plan names where the download goes
    assert (local / "model.safetensors").read_bytes() == (user_model / "model.safetensors").read_bytes()
    # the same files fingerprint alike wherever they are (the id differs: the path is part of it)
    assert model_source.fingerprint(model, moto_s3.endpoint_url) == model_source.fingerprint(HFModel(str(user_model)))

    store.put_dir(user_model, "models/bare")
    store.delete("models/bare/_MANIFEST.json")
    with pytest.raises(ValueError, match="no valid _MANIFEST.json"):
        model_source.fingerprint(HFModel(store.uri("models/bare")), moto_s3.endpoint_url)


def _hub_cache(root: Path, model_dir: Path, repo: str = "org--name") -> Path:
    """A Hugging Face cache as huggingface_hub lays it out: ``refs/<branch>`` -> commit, ``snapshots/<commit>``."""
    cache = root / "hub" / f"models--{repo}"
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text(SHA)
    shutil.copytree(model_dir, cache / "snapshots" / SHA)
    return cache / "snapshots" / SHA


def test_a_hub_id_resolves_through_the_offline_cache(user_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    snapshot = _hub_cache(tmp_path / "hf", user_model)
    (snapshot.parent.parent / "refs" / "v1").write_text(SHA)  # a tag naming the same commit
    args = ("rl", "model.path=org/name", f"workdir={tmp_path / 'w'}")
    run, argv = _plan(capsys, *args)
    assert f"actor_rollout_ref.model.path={snapshot}" in argv
    assert _plan(capsys, *args, "model.revision=v1")[0] == run  # a revision is its commit
    assert _plan(capsys, *args, f"model.revision={SHA}")[0] == run
    model = HFModel("org/name", revision="v1")
    assert model_source.model_identity(model) == {"path": "org/name", "revision": SHA}
    assert model_source.resolve_model_dir(model, tmp_path / "w") == snapshot
    assert model_source.model_config(model)["model_type"] == "qwen3_moe"
    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set and the Hugging Face cache"):
        model_source.hub_commit(HFModel("org/name", revision="v2"))


def test_a_cluster_job_gets_the_user_model_from_the_store_published_once(user_model, tmp_path):
    from stable_verl.verl_ext import inputs

    workdir = tmp_path / "work"
    cluster = ["launcher.kind=ray_job", "launcher.ray_address=http://h:8265", "launcher.device=cpu"]
    p = RLFlowParams.from_config(None, [*cluster, f"model.path={user_model}", f"workdir={workdir}"])
    from stable_verl.train.assets import planned_assets
    from stable_verl.train.stages import rl_job

    assets = planned_assets(workdir, p.model, p.task, p.seed)
    job = rl_job(p, assets, None, None)
    argv = job.argv(workdir / "runs" / "rl-x" / "checkpoints")
    key = model_source.model_key(p.model)
    assert f"actor_rollout_ref.model.path=${{oc.env:STABLE_VERL_NODE_DIR}}/store/inputs/models/{key}" in argv
    prefixes = [i["prefix"] for i in json.loads(job.env[inputs.ENV_INPUTS])]
    assert f"inputs/models/{key}" in prefixes and any(x.startswith("inputs/assets/") for x in prefixes)
    (user_model / ".cache").mkdir()
    (user_model / ".cache" / "x.lock").write_text("x")
    store = ArtifactStore(str(tmp_path / "store"))
    uploaded = job.node_inputs.publish(store)
    assert f"inputs/models/{key}" in uploaded and job.node_inputs.publish(store) == []  # once per store
    files = {f.path for f in store.read_manifest(f"inputs/models/{key}").files}
    assert "config.json" in files and "model.safetensors" in files and not [f for f in files if ".cache" in f]
    node = inputs.materialise(store, inputs.StoreInput(f"inputs/models/{key}"), tmp_path / "node")
    assert (node / "model.safetensors").read_bytes() == (user_model / "model.safetensors").read_bytes()
    assert rl_run_id(p, None) == rl_run_id(p.model_copy(update={"launcher": RLFlowParams().launcher}), None)


def test_the_preflight_accepts_a_user_moe_for_routing_replay(user_model, tmp_path):
    from stable_verl.train.preflight import check_inputs

    p = RLFlowParams.from_config(
        None, [f"model.path={user_model}", "rl.recipe=minirl_r3", f"store.root={tmp_path / 's'}", f"workdir={tmp_path}"]
    )
    check_inputs(p)  # qwen3_moe: a supported family


def test_verl_is_offline_on_cpu_and_on_gpu_as_the_user_says(monkeypatch):
    from stable_verl.config import cpu_env

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert cpu_env.cluster_env(cpu=True)["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in cpu_env.cluster_env(cpu=False)
    monkeypatch.setattr(cpu_env, "on_cpu", lambda: True)
    assert cpu_env.verl_env({})["HF_HUB_OFFLINE"] == "1"
    monkeypatch.setattr(cpu_env, "on_cpu", lambda: False)
    assert "HF_HUB_OFFLINE" not in cpu_env.verl_env({}) and cpu_env.verl_env({"HF_HUB_OFFLINE": "1"})["HF_HUB_OFFLINE"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert cpu_env.cluster_env(cpu=False)["HF_HUB_OFFLINE"] == "1"


def test_evaluation_trusts_remote_code_as_the_run_was_trained(tmp_path):
    import dataclasses

    from stable_verl.artifacts import RunLayout
    from stable_verl.eval.checkpoints import trusts_remote_code
    from stable_verl.eval.worker import EvalSettings, eval_argv

    store = ArtifactStore(str(tmp_path / "s"))
    user, tiny = RunLayout(store, "rl-grpo-0123abcd"), RunLayout(store, "rl-grpo-11111111")
    assert not trusts_remote_code(user)  # no config.yaml (yet)
    user.write_config({"model": {"path": "/m", "trust_remote_code": True}})
    tiny.write_config({"model": dataclasses.asdict(TinyModelSpec())})
    assert trusts_remote_code(user) and not trusts_remote_code(tiny)
    jobs, bench = [(Path("m"), Path("o"))], {"b": Path("b.parquet")}
    assert eval_argv(jobs, bench, EvalSettings(), trust_remote_code=True)[-1] == "--trust-remote-code"
    assert "--trust-remote-code" not in eval_argv(jobs, bench, EvalSettings())


def test_an_s3_model_in_the_store_reaches_the_nodes_from_where_it_is(user_model, moto_s3, tmp_path):
    """On a cluster, a model already in the store is each node's input at its own prefix: nothing is downloaded to
    the flow's machine or uploaded again, and a node gets the files checked against the model's manifest."""
    from stable_verl.train.assets import prepare_assets
    from stable_verl.train.stages import rl_job
    from stable_verl.verl_ext import inputs

    store = moto_s3.store()
    store.put_dir(user_model, "models/my")
    workdir = tmp_path / "work"
    cluster = ["launcher.kind=ray_job", "launcher.ray_address=http://h:8265", "launcher.device=cpu"]
    p = RLFlowParams.from_config(
        None,
        [
            *cluster,
            f"model.path={store.uri('models/my')}",
            f"store.root={store.uri()}",
            f"store.endpoint_url={moto_s3.endpoint_url}",
            f"workdir={workdir}",
        ],
    )
    assets = prepare_assets(workdir, p.model, p.task, p.seed, moto_s3.endpoint_url, fetch_model=False)
    assert not (workdir / "models").exists()  # the flow's machine holds no copy
    job = rl_job(p, assets, None, None)
    assert "actor_rollout_ref.model.path=${oc.env:STABLE_VERL_NODE_DIR}/store/models/my" in job.argv(workdir / "c")
    assert "models/my" not in job.node_inputs.uploads and not [u for u in job.node_inputs.uploads if "models" in u]
    node = inputs.materialise(p.store.open(), inputs.StoreInput("models/my"), tmp_path / "node")
    assert (node / "model.safetensors").read_bytes() == (user_model / "model.safetensors").read_bytes()
