"""Already-trained SFT checkpoints as cold-start inits (``init_checkpoints``): the parameters, the import's run id and
store layout, its idempotence, an ``s3://`` source on a real moto server, and the plan.

The checkpoint is what a team has: a tiny Qwen3-MoE written with ``save_pretrained`` beside its tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stable_verl.artifacts import MANIFEST_NAME, ArtifactStore, RunLayout, sha256_file
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.cli import main
from stable_verl.config.params import ColdstartParams, InitCheckpoint
from stable_verl.config.selector import choose_steps
from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from stable_verl.train.checkpoint_import import import_checkpoint, import_run_id
from stable_verl.train.node_inputs import checkpoint_model
from stable_verl.train.plan import plan_coldstart
from stable_verl.train.stages import init_checkpoint, local_run_dir, rl_run_id


@pytest.fixture(scope="module")
def saved_checkpoint(tmp_path_factory, tokenizer) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("team") / "sft-a", TinyModelSpec(), tokenizer, seed=7)


@pytest.fixture
def checkpoint(saved_checkpoint, tmp_path) -> Path:
    """A private copy of the team's folder (tests change its files), with a dot folder a hub download would have."""
    folder = Path(shutil.copytree(saved_checkpoint, tmp_path / "sft-a"))
    (folder / ".cache").mkdir()
    (folder / ".cache" / "lock").write_text("not part of the model")
    return folder


def _files(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    }


def test_checkpoint_inits_are_parsed_beside_the_teachers_and_checked():
    p = ColdstartParams.from_config(
        None,
        [
            "init_checkpoints.mine=/data/sft-a",
            "init_checkpoints.hub.path=org/sft-b",
            "init_checkpoints.hub.revision=v1",
        ],
    )
    assert p.init_checkpoints == {"mine": InitCheckpoint("/data/sft-a"), "hub": InitCheckpoint("org/sft-b", "v1")}
    assert p.teachers == []  # the built-in task's styles are not trained beside checkpoint inits unless named
    assert p.init_pairs() == [("mine", 0), ("hub", 0)]
    both = ColdstartParams.from_config(None, ["init_checkpoints.mine=/data/sft-a", "teachers=[terse]", "seeds=[0,1]"])
    assert both.teachers == ["terse"] and both.init_pairs() == [("mine", 0), ("mine", 1)]
    assert ColdstartParams.from_config(None, []).teachers == ["terse", "stepwise", "verbose"]  # unchanged default
    with pytest.raises(ValueError, match=r"\['terse'\] are both a teacher and an init_checkpoints entry"):
        ColdstartParams.from_config(None, ["init_checkpoints.terse=/x", "teachers=[terse]"])
    with pytest.raises(ValueError, match="no init to compare"):
        ColdstartParams.from_config(None, ["teachers=[]"])
    with pytest.raises(ValueError, match="revision applies to hub ids"):
        ColdstartParams.from_config(None, ["init_checkpoints.a.path=/x", "init_checkpoints.a.revision=v1"])
    with pytest.raises(ValueError, match="init_checkpoints.a.extra"):
        ColdstartParams.from_config(None, ["init_checkpoints.a.path=/x", "init_checkpoints.a.extra=1"])


def test_the_import_run_id_is_the_folders_identity_under_the_init_name(checkpoint, tmp_path):
    ckpt = InitCheckpoint(str(checkpoint))
    rid = import_run_id("mine", ckpt)
    assert rid.startswith("sft-mine-") and len(rid) == len("sft-mine-") + 8
    assert import_run_id("mine", ckpt) == rid  # stat calls and small reads: the same folder, the same id
    assert import_run_id("other", ckpt) != rid
    copy = InitCheckpoint(str(shutil.copytree(checkpoint, tmp_path / "elsewhere")))
    assert import_run_id("mine", copy) != rid  # the path is part of the identity, as for model.path
    config = json.loads((checkpoint / "config.json").read_text())
    (checkpoint / "config.json").write_text(json.dumps({**config, "rope_theta": 1.0}))
    assert import_run_id("mine", ckpt) != rid  # other weights' definition: another run
    with pytest.raises(ValueError, match="no such folder"):
        import_run_id("mine", InitCheckpoint(str(tmp_path / "nope")))


def test_an_import_is_a_complete_sft_run_whose_step_0_holds_the_hf_folder(checkpoint, tmp_path):
    store = ArtifactStore(str(tmp_path / "store"))
    lines: list[str] = []
    result = import_checkpoint("mine", InitCheckpoint(str(checkpoint)), store, tmp_path / "work", echo=lines.append)
    run = RunLayout(store, result.run_id)
    assert not result.skipped and result.run_id == import_run_id("mine", InitCheckpoint(str(checkpoint)))
    record = RunRecord.read(run)
    assert (record.kind, record.name, record.status, record.checkpoints, record.latest_step) == (
        "sft",
        "mine",
        "complete",
        [0],
        0,
    )
    assert run.read_run()["imported_from"] == {"path": str(checkpoint)}
    # What RL, evaluation and a cluster's nodes read: step 0, its HF folder with every file of the model, manifested.
    assert init_checkpoint(store, result.run_id) == (run, 0)
    assert checkpoint_model(run, 0) == ("runs/" + result.run_id + "/checkpoints/global_step_0", "huggingface")
    assert choose_steps(run, run.checkpoint_steps(), "all") == [0]
    manifest = store.read_manifest(run.checkpoint(0))
    assert {e.path: e.sha256 for e in manifest.files} == {f"huggingface/{k}": v for k, v in _files(checkpoint).items()}
    stored = tmp_path / "store" / run.checkpoint(0) / "huggingface"
    assert _files(stored) == _files(checkpoint) and not (stored / ".cache").exists()
    assert any("global_step_0/huggingface" in line for line in lines)

    # A complete import is skipped: nothing is written again.
    before = (tmp_path / "store" / run.run_json).read_text(), store.read_text(f"{run.checkpoint(0)}/{MANIFEST_NAME}")
    again = import_checkpoint("mine", InitCheckpoint(str(checkpoint)), store, tmp_path / "work", echo=lines.append)
    assert again.skipped and again.run_id == result.run_id
    after = (tmp_path / "store" / run.run_json).read_text(), store.read_text(f"{run.checkpoint(0)}/{MANIFEST_NAME}")
    assert after == before


def test_the_store_browser_shows_an_import_as_an_sft_run(checkpoint, tmp_path, capsys):
    store = ArtifactStore(str(tmp_path / "store"))
    result = import_checkpoint("mine", InitCheckpoint(str(checkpoint)), store, tmp_path / "work", echo=lambda _: None)
    assert main(["runs", "list", "--kind", "sft", "--store", store.uri()]) == 0
    assert result.run_id in capsys.readouterr().out
    assert main(["runs", "show", result.run_id, "--store", store.uri()]) == 0
    shown = capsys.readouterr().out
    assert "imported_from" in shown and "1 complete, 0 incomplete" in shown


def test_an_interrupted_import_is_redone(checkpoint, tmp_path):
    """What a killed import leaves (run.json 'running', part of the files, no manifest) is redone on the next run."""
    store = ArtifactStore(str(tmp_path / "store"))
    ckpt = InitCheckpoint(str(checkpoint))
    run = RunLayout(store, import_run_id("mine", ckpt))
    run.write_run({"kind": "sft", "name": "mine", "status": "running"})
    partial = tmp_path / "store" / run.checkpoint(0) / "huggingface"
    partial.mkdir(parents=True)
    (partial / "config.json").write_text("{")  # cut short
    assert RunLayout(store, run.run_id).latest_checkpoint() is None
    result = import_checkpoint("mine", ckpt, store, tmp_path / "work", echo=lambda _: None)
    assert not result.skipped and RunRecord.read(run).complete and run.latest_checkpoint() == 0
    assert _files(partial) == _files(checkpoint)
    store.get_dir(run.checkpoint(0), tmp_path / "fetched")  # every file checked against the manifest
    assert _files(tmp_path / "fetched" / "huggingface") == _files(checkpoint)


def test_an_s3_checkpoint_is_imported_from_its_manifested_prefix(checkpoint, moto_s3, tmp_path):
    source = moto_s3.store()
    source.put_dir(checkpoint, "team/sft-b")  # how a team's folder reaches S3 with its manifest
    ckpt = InitCheckpoint(source.uri("team/sft-b"))
    store = moto_s3.store()
    result = import_checkpoint("s3init", ckpt, store, tmp_path / "work", moto_s3.endpoint_url, echo=lambda _: None)
    run = RunLayout(store, result.run_id)
    assert RunRecord.read(run).complete and checkpoint_model(run, 0)[1] == "huggingface"
    store.get_dir(run.checkpoint(0), tmp_path / "fetched")
    assert _files(tmp_path / "fetched" / "huggingface") == _files(checkpoint)
    assert result.run_id == import_run_id("s3init", ckpt, moto_s3.endpoint_url)


def test_the_plan_shows_each_import_then_rl_from_its_step_0(checkpoint, tmp_path, capsys):
    argv = [f"workdir={tmp_path / 'work'}", f"init_checkpoints.mine={checkpoint}", "seeds=[0,1]", "teachers=[terse]"]
    p = ColdstartParams.from_config(None, argv)
    stages = plan_coldstart(p)
    assert [s.kind for s in stages] == ["sft", "rl", "sft", "rl", "import", "rl", "rl"]
    imported = stages[4]
    assert imported.run_id == import_run_id("mine", InitCheckpoint(str(checkpoint)))
    assert imported.argv == [str(checkpoint), "->", f"runs/{imported.run_id}/checkpoints/global_step_0/huggingface"]
    for stage, seed in zip(stages[5:], [0, 1], strict=True):
        rl = p.rl_params(imported.run_id, seed)
        assert stage.run_id == rl_run_id(rl, f"runs/{imported.run_id}/checkpoints/global_step_0")
        model = local_run_dir((tmp_path / "work").resolve(), imported.run_id) / "checkpoints/global_step_0/huggingface"
        assert f"actor_rollout_ref.model.path={model}" in stage.argv
    assert main(["plan", "coldstart", "--config", "configs/coldstart.yaml", *argv]) == 0
    assert f"# IMPORT {imported.run_id}" in capsys.readouterr().out
