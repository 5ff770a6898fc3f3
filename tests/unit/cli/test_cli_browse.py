"""``stable-verl runs|comparisons|run`` over a local folder and a real moto S3 server (s3fs over HTTP).

The stores are filled through the public layout API (``RunLayout.write_run``, ``upload_checkpoint`` with real
manifests, ``ComparisonLayout``), plus a few hand-made broken entries that the CLI must skip or flag.
"""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.registry import FLOWS
from stable_verl.artifacts import MANIFEST_NAME, ArtifactStore, ComparisonLayout, RunLayout
from stable_verl.cli import main
from stable_verl.config.params import StoreParams
from tests.support.s3 import MotoS3, moto_server

SFT = "sft-stepwise-0000aaaa"
RL = "rl-minirl-0000bbbb"
EVAL = "eval-minirl-0000cccc"
CMP = "coldstart-2026-01"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"  # AWS's documented example secret shape
OTHER_SECRET = "hf_abcdefghijklmnopqrstuvwxyz012345"


def _ckpt(root: Path, step: int) -> Path:
    root.mkdir(parents=True)
    (root / "model.safetensors").write_bytes(bytes([step]) * (100 * step))
    (root / "config.json").write_text(f'{{"step": {step}}}')
    return root


def _folder(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


def populate(store: ArtifactStore, tmp: Path) -> None:
    """A complete SFT run, an RL run in progress, a failed eval run, two comparisons, and the broken
    leftovers of interrupted writers, written the way the pipeline writes them (manifested folders)."""
    sft = RunLayout(store, SFT)
    sft.write_run(
        {"kind": "sft", "name": "stepwise", "status": "complete", "created_at": "2026-01-01T00:00:00Z"}
        | {"latest_step": 40, "total_steps": 40}
    )
    sft.upload_checkpoint(_ckpt(tmp / "sft40", 40), 40)

    rl = RunLayout(store, RL)
    upstream = sft.uri(sft.checkpoint(40))
    rl.write_run(
        {"kind": "rl", "name": "minirl", "status": "running", "created_at": "2026-01-02T00:00:00Z"}
        | {"total_steps": 10, "attempts": 2, "parent_checkpoint": upstream}
    )
    rl.write_config({"rl": {"recipe": "minirl", "lr": 1e-4, "total_steps": 10}, "pad_token": "<pad>"})
    rl.write_command(["algorithm.adv_estimator=grpo", "trainer.logger=['console','file']"])
    rl.upload_checkpoint(_ckpt(tmp / "rl3", 3), 3)
    rl.upload_checkpoint(_ckpt(tmp / "rl5", 5), 5)
    store.delete(f"{rl.checkpoint(5)}/model.safetensors")  # manifest present, a listed file gone
    store.write_bytes(f"{rl.checkpoint(6)}/model.safetensors", b"half an upload")  # no manifest yet
    rows = [
        {
            "step": s,
            "critic/score/mean": 0.1 * s,
            "reward/acc": 0.05 * s,
            "training/rollout_probs_diff_max": 0.125,
            "actor/tis/weight_mean": 0.75,
            "actor/grad_norm": 9.5,
            "actor/entropy_per_token": 1.5,
            "actor/entropy": 31.5,  # verl's: 1.5 x 21 tokens under MiniRL's seq-mean-token-sum
            "response_length/mean": 21.0,
        }
        for s in range(1, 7)
    ]
    rows.append({"step": 6, "val-core/arith/acc/mean@4": 0.375})  # verl logs validation separately
    rl.write_metrics(rows)
    results = {"avg@4": 0.25, "avg@4_stderr": 0.0625, "format_rate": 0.875, "num_prompts": 32, "k": 4}
    evaluated = _folder(tmp / "eval3", {"results.json": json.dumps(results), "samples.jsonl": "{}\n"})
    store.put_dir(evaluated, rl.eval_dir(3, "arith"))
    store.write_json(rl.eval_results(5, "arith"), results | {"avg@4": 0.5})  # evaluation still uploading

    RunLayout(store, EVAL).write_run({"kind": "eval", "status": "failed", "created_at": "2026-01-03T00:00:00Z"})

    # Leftovers: an index entry whose run.json never landed, and a garbled index entry.
    store.write_json("index/runs/rl-ghost-0000dddd.json", {"run_id": "rl-ghost-0000dddd", "kind": "rl"})
    store.write_bytes("index/runs/rl-garbled-0000eeee.json", b'{"run_id": "rl-garb')

    report = _folder(
        tmp / "report",
        {
            "report.md": "# cold start\n",
            "table.csv": "init,benchmark,final_mean,final_std\nstepwise,arith,0.25,0.01\nterse,arith,0.2,0\n",
            "plots/curves.png": b"\x89PNG",
        },
    )
    store.put_dir(report, ComparisonLayout(store, CMP).prefix, metadata={"runs": [sft.uri(), rl.uri()]})
    store.write_text(ComparisonLayout(store, "half-done").table_csv, "init\n")  # upload cut short: no manifest


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[MotoS3]:
    """A moto S3 server with a bucket of its own (moto keeps one in-process backend for all its servers)."""
    with moto_server("stable-verl-cli-test") as moto:
        yield moto


@pytest.fixture(params=["local", "s3"])
def browse_store(request, tmp_path, monkeypatch) -> tuple[str, ArtifactStore]:
    """(``--store`` argument, store) for a populated local folder or moto S3 prefix."""
    for name in ("STABLE_VERL_ARTIFACT_ROOT", "STABLE_VERL_S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    if request.param == "local":
        store = ArtifactStore(str(tmp_path / "artifacts"))
        arg = str(tmp_path / "artifacts")
    else:
        moto: MotoS3 = request.getfixturevalue("moto_s3")
        store = moto.store()
        monkeypatch.setenv("STABLE_VERL_S3_ENDPOINT", moto.endpoint_url)
        arg = store.uri()
    populate(store, tmp_path / "src")
    return arg, store


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def first_cells(out: str) -> set[str]:
    """First cells of the rows of the rich tables in ``out``."""
    return {line.strip("│┃ ").split("│")[0].split("┃")[0].strip() for line in out.splitlines() if line[:1] in "│┃"}


def table_row(out: str, first_cell: str) -> list[str]:
    """Cells of the rich table row whose first cell is ``first_cell``."""
    for line in out.splitlines():
        cells = [c.strip() for c in re.split("[│┃]", line.strip().strip("│┃"))]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{out}")


# ------------------------------------------------------------------------------------------------- runs
def test_runs_list_shows_runs_and_skips_broken_entries(browse_store, capsys):
    arg, store = browse_store
    code, out, err = run_cli(capsys, "runs", "list", "--store", arg)
    assert code == 0, err
    assert f"runs in {store.uri()}" in out
    # run_id, kind, status, step, checkpoint (latest *complete*), created_at, parent
    assert table_row(out, SFT)[:6] == [SFT, "sft", "complete", "40/40", "40", "2026-01-01T00:00:00Z"]
    rl = table_row(out, RL)
    assert rl[:6] == [RL, "rl", "running", "-/10", "3", "2026-01-02T00:00:00Z"]  # 5 lost a file, 6 unmanifested
    assert rl[6].startswith(store.uri("runs", SFT)[:20])
    assert table_row(out, EVAL)[:3] == [EVAL, "eval", "failed"]
    assert "ghost" not in out and "garbled" not in out
    # oldest first
    assert out.index(SFT) < out.index(RL) < out.index(EVAL)


def test_runs_list_filters_by_kind(browse_store, capsys):
    arg, _ = browse_store
    code, out, _ = run_cli(capsys, "runs", "list", "--kind", "rl", "--store", arg)
    assert code == 0 and first_cells(out) == {"run_id", RL}
    code, out, _ = run_cli(capsys, "runs", "list", "--kind", "sft", "--store", arg)
    assert code == 0 and first_cells(out) == {"run_id", SFT}


def test_runs_show_summarises_one_run(browse_store, capsys):
    arg, store = browse_store
    code, out, err = run_cli(capsys, "runs", "show", RL, "--store", arg)
    assert code == 0, err
    assert f"folder: {store.uri('runs', RL)}" in out
    assert table_row(out, "status")[1] == "running" and table_row(out, "attempts")[1] == "2"
    assert "recipe: minirl" in out and "pad_token: <pad>" in out  # config.yaml, ML keys not masked
    assert "trainer.logger=['console','file']" in out  # command.json verbatim (no markup eaten)
    assert "checkpoints (1 complete, 2 incomplete)" in out
    assert table_row(out, "3")[1:3] == ["yes", "2"]
    assert table_row(out, "5")[1] == "no" and table_row(out, "6")[1:3] == ["no", "-"]
    assert store.uri(RunLayout(store, RL).checkpoint(3)) in out
    assert "metrics: 7 rows, last step 6" in out
    assert table_row(out, "reward/acc")[1] == "0.3"
    assert table_row(out, "critic/score/mean")[1] == "0.6"
    assert table_row(out, "training/rollout_probs_diff_max")[1] == "0.125"
    assert table_row(out, "actor/tis/weight_mean")[1] == "0.75"
    assert table_row(out, "response_length/mean")[1] == "21"
    assert table_row(out, "val-core/arith/acc/mean@4")[1] == "0.375"  # merged from the validation row
    assert "actor/grad_norm" not in out  # not a key metric
    assert table_row(out, "actor/entropy_per_token")[1] == "1.5"
    with pytest.raises(AssertionError, match="no row 'actor/entropy'"):  # verl's length-scaled entropy: not shown
        table_row(out, "actor/entropy")
    assert "evaluations (1 incomplete, not shown)" in out  # step 5: results.json but no manifest yet
    evals = [line for line in out.splitlines() if "arith" in line and "avg@4" in line]
    assert len(evals) == 1
    cells = [c.strip() for c in re.split("[│┃]", evals[0].strip().strip("│┃"))]
    assert cells == ["3", "arith", "avg@4", "0.25", "0.0625", "0.875", "32"]  # avg@4, its stderr, format rate


def test_runs_show_a_bare_run(browse_store, capsys):
    arg, _ = browse_store
    code, out, err = run_cli(capsys, "runs", "show", EVAL, "--store", arg)
    assert code == 0, err
    assert "checkpoints: none" in out and "metrics: none" in out and "evaluations: none" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["runs", "show", "rl-minirl-0000bbbc"], f"no run 'rl-minirl-0000bbbc' in .*did you mean '{RL}'"),
        (["runs", "show", "nothing-like-it"], "no run 'nothing-like-it' in .*see `stable-verl runs list`"),
        (["runs", "show", "../etc"], "invalid run_id '../etc'"),
        (["comparisons", "show", "nope"], "no comparison 'nope' in "),
    ],
)
def test_unknown_ids_exit_2_with_one_line(browse_store, capsys, argv, message):
    arg, _ = browse_store
    code, out, err = run_cli(capsys, *argv, "--store", arg)
    lines = err.strip().splitlines()
    assert code == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith("stable-verl: error: ")
    assert re.search(message, lines[0]), lines[0]


def test_usage_errors_are_one_line(capsys):
    code, out, err = run_cli(capsys, "runs", "list", "--kind", "ppo")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "stable-verl runs list: error: argument --kind: invalid choice: 'ppo' (choose from 'sft', 'rl')"
    ]


def test_metrics_rows_in_verl_file_logger_format():
    from stable_verl.site.store_reader import last_metrics

    rows = [
        {"step": 1, "data": {"reward/acc": 0.25, "actor/grad_norm": 1.0}},
        {"step": 2, "data": {"reward/acc": 0.5, "actor/tis/truncated_frac": 0.125}},
        {"step": 2, "data": {"val-core/bench_id/acc/mean@4": 0.75}},  # validation: a row of its own
    ]
    summary = last_metrics(rows)
    assert summary["rows"] == 3 and summary["step"] == 2
    assert summary["highlights"] == {
        "reward/acc": 0.5,
        "val-core/bench_id/acc/mean@4": 0.75,
        "actor/tis/truncated_frac": 0.125,
    }
    assert last_metrics([]) == {"rows": 0, "step": None, "values": {}, "highlights": {}}


# ------------------------------------------------------------------------------------------ comparisons
def test_comparisons_list_and_show(browse_store, capsys):
    arg, store = browse_store
    code, out, err = run_cli(capsys, "comparisons", "list", "--store", arg)
    assert code == 0, err
    # comparison_id, status, created_at, runs, plots, uri
    row = table_row(out, CMP)
    assert row[:2] == [CMP, "complete"] and row[2].endswith("Z") and row[3:5] == ["2", "1"]
    assert table_row(out, "half-done")[:5] == ["half-done", "incomplete", "", "-", "0"]

    code, out, err = run_cli(capsys, "comparisons", "show", CMP, "--store", arg)
    assert code == 0, err
    layout = ComparisonLayout(store, CMP)
    assert f"comparison {CMP} (complete)" in out and f"report: {layout.uri(layout.report_md)}" in out
    assert f"  {store.uri('runs', RL)}" in out and f"  {store.uri('runs', SFT)}" in out
    assert table_row(out, "init")[:2] == ["init", "benchmark"]
    assert table_row(out, "stepwise") == ["stepwise", "arith", "0.25", "0.01"]
    assert table_row(out, "terse")[:2] == ["terse", "arith"]
    assert layout.uri(layout.plot("curves")) in out

    code, out, _ = run_cli(capsys, "comparisons", "show", "half-done", "--store", arg)
    assert code == 0 and "half-done (incomplete: no valid _MANIFEST.json yet" in out
    assert "report: missing" in out and "plots: none" in out and "runs: not recorded" in out


# ---------------------------------------------------------------------------------------- default store
def test_store_defaults_to_env_then_artifacts_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("STABLE_VERL_ARTIFACT_ROOT", raising=False)
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "runs", "list")
    assert code == 0 and "no runs in" in out and str(tmp_path / "artifacts") in out.replace("\n", "")

    populate(ArtifactStore(str(tmp_path / "artifacts")), tmp_path / "src")
    code, out, _ = run_cli(capsys, "runs", "list")
    assert code == 0 and RL in out

    elsewhere = tmp_path / "elsewhere"
    RunLayout(ArtifactStore(str(elsewhere)), "sft-other-00001111").write_run({"kind": "sft", "status": "completed"})
    monkeypatch.setenv("STABLE_VERL_ARTIFACT_ROOT", str(elsewhere))
    code, out, _ = run_cli(capsys, "runs", "list")
    assert code == 0 and "sft-other-00001111" in out and RL not in out
    code, out, _ = run_cli(capsys, "comparisons", "list")
    assert code == 0 and "no comparisons in" in out


# -------------------------------------------------------------------------------------------- redaction
def _leaky_run(store: ArtifactStore) -> None:
    """A run whose files carry credentials: written raw (write_bytes), as a careless external writer would."""
    run = RunLayout(store, "rl-leaky-0000ffff")
    store.write_bytes(
        run.run_json,
        (
            '{"run_id": "rl-leaky-0000ffff", "kind": "rl", "status": "running", '
            f'"note": "launched with --secret {SECRET}", '
            '"storage_options": {"key": "AKIAEXAMPLEKEYID0001", "secret": "plain-secret-value-9"}, '
            '"upstream": "s3://bucket/runs/x", "endpoint": "http://minio:pa55word-xyz@minio.local:9000"}'
        ).encode(),
    )
    store.write_bytes(
        "index/runs/rl-leaky-0000ffff.json", b'{"run_id": "rl-leaky-0000ffff", "kind": "rl", "status": "running"}'
    )
    store.write_bytes(
        run.config_yaml,
        (
            "s3:\n  aws_secret_access_key: yaml-secret-value-7\n"
            f"  endpoint_url: http://admin:pa55word-xyz@127.0.0.1:9000\nhub:\n  token: {OTHER_SECRET}\n"
            f"note: uses {SECRET}\n"
        ).encode(),
    )
    store.write_bytes(run.command_json, f'{{"overrides": ["+hf_token={OTHER_SECRET}", "x={SECRET}"]}}'.encode())
    store.write_bytes(
        run.metrics_jsonl, f'{{"step": 1, "data": {{"reward/acc": 0.5, "note/env": "{SECRET}"}}}}\n'.encode()
    )


def test_credentials_are_never_printed(browse_store, monkeypatch, capsys):
    arg, store = browse_store
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)  # moto accepts any key pair
    monkeypatch.setenv("HF_TOKEN", OTHER_SECRET)
    _leaky_run(store)
    outputs = []
    for argv in (["runs", "list"], ["runs", "show", "rl-leaky-0000ffff"], ["comparisons", "list"]):
        code, out, err = run_cli(capsys, *argv, "--store", arg)
        assert code == 0, err
        outputs.append(out + err)
    text = "\n".join(outputs)
    assert "rl-leaky-0000ffff" in text and "reward/acc" in text
    for leaked in (
        SECRET,
        OTHER_SECRET,
        "AKIAEXAMPLEKEYID0001",
        "plain-secret-value-9",
        "yaml-secret-value-7",
        "pa55word-xyz",
    ):
        assert leaked not in text, leaked
    assert "***" in text and "minio.local:9000" in text  # the rest of the URL stays useful


def test_endpoint_credentials_are_not_printed_on_errors(moto_s3, monkeypatch, capsys):
    host = moto_s3.endpoint_url.removeprefix("http://")
    monkeypatch.setenv("STABLE_VERL_S3_ENDPOINT", f"http://admin:pa55word-xyz@{host}")  # botocore rejects userinfo
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    code, out, err = run_cli(capsys, "runs", "list", "--store", f"s3://{moto_s3.bucket}/x")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("stable-verl: error: artifact store")
    assert "pa55word-xyz" not in err and SECRET not in err and "admin:***@" in err


def test_unopenable_store_is_bad_input(capsys):
    code, out, err = run_cli(capsys, "runs", "list", "--store", "nosuchproto://bucket/x")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "cannot open artifact store" in err


# -------------------------------------------------------------------------------------------------- run
class _Params:
    """Stands in for a pydantic params model: records what ``from_config`` got."""

    calls: list = []
    root = "."

    def __init__(self, path, overrides):
        self.path, self.overrides = path, overrides
        self.store, self.workdir = StoreParams(root=f"{self.root}/store"), f"{self.root}/work"  # the preflight's

    @classmethod
    def from_config(cls, path, overrides):
        if "bad=1" in overrides:
            raise ValueError("bad: input should be a valid integer\n  (got '1x')")
        cls.calls.append((path, overrides))
        return cls(path, overrides)


@pytest.fixture
def fake_flows(monkeypatch, tmp_path):
    """Fake ``stable_verl.config.params`` and ``flows.<name>`` modules (the real flows are tested elsewhere)."""
    params = types.ModuleType("stable_verl.config.params")
    for spec in FLOWS.values():
        setattr(params, spec.params, type(spec.params, (_Params,), {"calls": [], "root": str(tmp_path)}))
    monkeypatch.setitem(sys.modules, "stable_verl.config.params", params)
    called = {}
    for name, spec in FLOWS.items():
        module = types.ModuleType(spec.module)

        def flow(p, _name=name):
            called[_name] = p
            return {
                "run_id": f"{_name}-x-00000000",
                "storage_options": {"secret": "flow-secret-value"},
                "rows": [{"benchmark": "bench_id", "avg@4": 0.5}, {"benchmark": "bench_hard", "avg@4": 0.25}],
            }

        setattr(module, spec.function, flow)
        monkeypatch.setitem(sys.modules, spec.module, module)
    return params, called


@pytest.mark.parametrize("name", ["sft", "rl", "evaluate", "coldstart"])
def test_run_dispatches_to_the_flow(fake_flows, capsys, name):
    params, called = fake_flows
    code, out, err = run_cli(capsys, "run", name, "--config", "configs/x.yaml", "a=1", "b.c=[1,2]")
    assert code == 0, err
    cls = getattr(params, FLOWS[name].params)
    assert cls.calls == [("configs/x.yaml", ["a=1", "b.c=[1,2]"])]
    assert isinstance(called[name], cls) and called[name].overrides == ["a=1", "b.c=[1,2]"]
    assert table_row(out, "run_id")[1] == f"{name}-x-00000000" and "flow-secret-value" not in out
    assert table_row(out, "bench_hard") == ["bench_hard", "0.25"]  # a list of rows becomes a table


def test_run_without_config_passes_none(fake_flows, capsys):
    params, called = fake_flows
    assert run_cli(capsys, "run", "rl")[0] == 0
    assert params.RLFlowParams.calls == [(None, [])]


def test_run_bad_parameters_exit_2_before_the_flow_loads(fake_flows, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "flows.sft", None)  # would fail to import: must not be reached
    code, out, err = run_cli(capsys, "run", "sft", "bad=1")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == ["stable-verl: error: bad: input should be a valid integer (got '1x')"]


def test_run_reports_a_flow_that_cannot_be_imported(fake_flows, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "flows.coldstart", None)
    code, out, err = run_cli(capsys, "run", "coldstart")
    lines = err.strip().splitlines()
    assert code == 1 and out == "" and len(lines) == 1
    assert lines[0].startswith("stable-verl: error: cannot import flow 'coldstart' (flows.coldstart:")
    monkeypatch.setitem(sys.modules, "flows.coldstart", types.ModuleType("flows.coldstart"))
    code, _, err = run_cli(capsys, "run", "coldstart")
    assert code == 1 and "has no 'coldstart_comparison_flow'" in err


def test_run_rejects_unknown_flows(capsys):
    code, _, err = run_cli(capsys, "run", "pretrain")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "invalid choice: 'pretrain'" in err


def test_manifests_are_what_marks_completion(browse_store):
    """Guard for the fixture itself: step 3 is the only checkpoint with a manifest and all its files."""
    _, store = browse_store
    rl = RunLayout(store, RL)
    assert store.exists(f"{rl.checkpoint(3)}/{MANIFEST_NAME}") and store.is_complete(rl.checkpoint(3))
    assert not store.is_complete(rl.checkpoint(5)) and not store.is_complete(rl.checkpoint(6))
