"""The user's task (TaskData): files in user formats normalised to verl's schemas, names validated against the
task's own, identities from content, and ``stable-verl plan`` showing the normalised data and the reward."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from stable_verl.cli import main as cli_main
from stable_verl.config.params import ColdstartParams, EvaluateFlowParams, SFTFlowParams
from stable_verl.eval.checkpoints import benchmark_files
from stable_verl.tasks import user_task as task_data
from stable_verl.tasks.user_task import TaskData, normalised_splits, task_identity, write_splits
from stable_verl.train.plan import plan_coldstart

REWARD = "def score(data_source, solution_str, ground_truth, extra_info=None):\n    return 0.0\n"


def _problems(n: int, offset: int) -> list[tuple[str, int]]:
    return [(f"What is {i} + {offset}?", i + offset) for i in range(n)]


def _rl_frame(n: int, offset: int, data_source: str = "openai/gsm8k") -> pd.DataFrame:
    """The arithmetic task in GSM8K's form: verl's default_compute_score reads '#### <answer>' for openai/gsm8k."""
    return pd.DataFrame(
        [
            {
                "data_source": data_source,
                "prompt": [{"role": "user", "content": q}],
                "reward_model": {"style": "rule", "ground_truth": str(a)},
                "extra_info": {"split": "train", "index": i},
            }
            for i, (q, a) in enumerate(_problems(n, offset))
        ]
    )


@pytest.fixture
def byo(tmp_path):
    """A user's files: SFT as jsonl prompt/response (init 'short') and parquet messages (init 'long'), RL prompts,
    one benchmark, a reward file; and the YAML a user writes for them."""
    short = [{"prompt": q, "response": f"#### {a}"} for q, a in _problems(20, 1)]
    (tmp_path / "short.jsonl").write_text("".join(json.dumps(r) + "\n" for r in short))
    long = [
        [{"role": "user", "content": q}, {"role": "assistant", "content": f"{q[8:-1]} = {a}\n#### {a}"}]
        for q, a in _problems(8, 2)
    ]
    pd.DataFrame({"messages": long}).to_parquet(tmp_path / "long.parquet")
    pd.DataFrame({"messages": long[:2]}).to_parquet(tmp_path / "long_val.parquet")
    _rl_frame(16, 3).to_parquet(tmp_path / "rl_train.parquet")
    _rl_frame(4, 7).to_parquet(tmp_path / "bench.parquet")
    (tmp_path / "my_reward.py").write_text(REWARD)
    config = {
        "workdir": str(tmp_path / "work"),
        "store": {"root": str(tmp_path / "store")},
        "task": {
            "sft": {
                "short": {"train": [str(tmp_path / "short.jsonl")]},
                "long": {"train": [str(tmp_path / "long.parquet")], "val": [str(tmp_path / "long_val.parquet")]},
            },
            "rl_train": [str(tmp_path / "rl_train.parquet")],
            "benchmarks": {"mybench": str(tmp_path / "bench.parquet")},
            "reward": {"path": str(tmp_path / "my_reward.py"), "name": "score"},
        },
    }
    (tmp_path / "byo.yaml").write_text(json.dumps(config))  # JSON is YAML
    return tmp_path


def test_user_formats_become_verl_rows(byo):
    params = ColdstartParams.from_config(str(byo / "byo.yaml"), [])
    assert isinstance(params.task, TaskData)
    assert params.teachers == ["short", "long"]  # the task's inits, not the built-in teacher styles
    assert params.eval.benchmark_list(params.task) == ["mybench"]
    splits = normalised_splits(params.task)
    # jsonl prompt/response -> a user turn and an assistant turn; 20 rows, the last 2 (10%) held out as val
    assert splits["sft_short_train"][0] == {
        "messages": [{"role": "user", "content": "What is 0 + 1?"}, {"role": "assistant", "content": "#### 1"}]
    }
    assert (len(splits["sft_short_train"]), len(splits["sft_short_val"])) == (18, 2)
    assert splits["sft_short_val"][-1]["messages"][0]["content"] == "What is 19 + 1?"
    assert (len(splits["sft_long_train"]), len(splits["sft_long_val"])) == (8, 2)  # its own val file
    assert splits["rl_val"] == splits["rl_train"]  # no rl_val files: verl needs one, stable-verl validates nothing
    row = splits["benchmark_mybench"][1]
    assert row["reward_model"] == {"style": "rule", "ground_truth": "8"} and row["data_source"] == "openai/gsm8k"
    files = write_splits(byo / "out", params.task)
    written = pd.read_parquet(files["sft_short_train"])
    assert list(written.columns) == ["messages"] and len(written) == 18
    assert list(pd.read_parquet(files["rl_train"])["extra_info"][2].values()) == ["train", 2]


def test_identity_is_the_content(byo):
    task = ColdstartParams.from_config(str(byo / "byo.yaml"), []).task
    first = task_identity(task)
    # the same SFT rows given as parquet messages instead of jsonl prompt/response: the same identity
    rows = [
        r["messages"] for r in normalised_splits(task)["sft_short_train"] + normalised_splits(task)["sft_short_val"]
    ]
    pd.DataFrame({"messages": rows}).to_parquet(byo / "short.parquet")
    as_parquet = task.model_copy(
        update={
            "sft": {**task.sft, "short": task.sft["short"].model_copy(update={"train": [str(byo / "short.parquet")]})}
        }
    )
    assert task_identity(as_parquet) == first
    (byo / "my_reward.py").write_text(REWARD + "# changed\n")
    assert task_identity(task)["reward"] != first["reward"] and task_identity(task)["data"] == first["data"]
    (byo / "bench.parquet").unlink()
    _rl_frame(5, 7).to_parquet(byo / "bench.parquet")
    assert task_identity(task)["data"] == first["data"]  # benchmarks train nothing: not in the run ids
    _rl_frame(16, 4).to_parquet(byo / "rl_train.parquet")
    assert task_identity(task)["data"]["rl_train"] != first["data"]["rl_train"]


def test_plan_shows_the_normalised_data_and_the_reward(byo, capsys):
    assert cli_main(["plan", "coldstart", "--config", str(byo / "byo.yaml")]) == 0
    out = capsys.readouterr().out
    assert "#   sft_short_train: 18 rows" in out and f"from {byo / 'short.jsonl'}" in out
    assert "#   sft_short_val: 2 rows" in out and "held out of sft_short_train" in out
    assert f"# REWARD {byo / 'my_reward.py'}:score, kwargs {{}}" in out
    assert f"reward.custom_reward_function.path={byo / 'my_reward.py'}" in out
    assert "reward.custom_reward_function.name=score" in out and "format_bonus" not in out  # only the built-in's
    stages = plan_coldstart(ColdstartParams.from_config(str(byo / "byo.yaml"), []))
    assert [s.run_id.split("-")[:2] for s in stages] == [
        ["sft", "short"],
        ["rl", "grpo"],
        ["sft", "long"],
        ["rl", "grpo"],
    ]
    sft_argv = " ".join(stages[0].argv)
    assert "/data/sft_short_train.parquet" in sft_argv and str(byo / "work" / "assets") in sft_argv
    again = plan_coldstart(ColdstartParams.from_config(str(byo / "byo.yaml"), []))
    assert [s.run_id for s in again] == [s.run_id for s in stages]  # stable across invocations


def test_user_benchmark_files_for_evaluation(byo):
    params = EvaluateFlowParams.from_config(str(byo / "byo.yaml"), ["runs=[rl-x-00000000]"])
    files = benchmark_files(byo / "work", params.task, ["mybench"], n_prompts=3)
    bench = pd.read_parquet(files["mybench"])
    assert len(bench) == 3 and bench["reward_model"][2]["ground_truth"] == "9"


@pytest.mark.parametrize(
    ("overrides", "says"),
    [
        (["teachers=[short,terse]"], "'terse' is not an SFT init of the task; task.sft has: short, long"),
        (["eval.benchmarks=[bench_id]"], "no such benchmark dataset ['bench_id']; available: mybench"),
        (["rl.format_bonus=0.1"], "task.reward.kwargs"),
        (["task.benchmarks.my/bench=x.parquet"], "name 'my/bench'"),
        (["task.rl_train=[x.csv]"], "must be .parquet, .jsonl or .json"),
    ],
)
def test_names_are_checked_against_the_task(byo, overrides, says):
    with pytest.raises(ValueError, match=None) as e:
        ColdstartParams.from_config(str(byo / "byo.yaml"), overrides)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_sft_teacher_names_a_user_init(byo):
    assert SFTFlowParams.from_config(str(byo / "byo.yaml"), ["sft.teacher=long"]).sft.teacher == "long"
    with pytest.raises(ValueError, match="sft.teacher 'stepwise' is not an SFT init"):
        SFTFlowParams.from_config(str(byo / "byo.yaml"), [])


def test_bad_files_name_the_column(byo):
    pd.DataFrame({"question": ["q"], "answer": ["a"]}).to_parquet(byo / "bad.parquet")
    task = TaskData(rl_train=[str(byo / "bad.parquet")])
    with pytest.raises(ValueError, match="verl's RL schema needs data_source, prompt, reward_model.ground_truth"):
        normalised_splits(task)
    task = TaskData(rl_train=[str(byo / "rl_train.parquet")], sft={"a": {"train": [str(byo / "bad.parquet")]}})
    with pytest.raises(ValueError, match="needs 'messages' \\(chat list\\) or 'prompt' \\+ 'response'"):
        normalised_splits(task)
    with pytest.raises(ValueError, match="does not exist"):
        task_data.read_rows(str(byo / "nope.parquet"))


def test_assets_hold_the_normalised_splits_where_the_plan_says(byo):
    """The tiny model with your data: its tokenizer is trained on your SFT and RL text, the splits are written as
    parquet into the content-addressed assets folder the plan names."""
    from transformers import AutoTokenizer

    from stable_verl.train.assets import planned_assets, prepare_assets

    p = ColdstartParams.from_config(str(byo / "byo.yaml"), [])
    built = prepare_assets(byo / "work", p.model, p.task, p.seed)
    assert built == planned_assets(byo / "work", p.model, p.task, p.seed)
    assert pd.read_parquet(built.data["benchmark_mybench"])["reward_model"][0]["ground_truth"] == "7"
    assert pd.read_parquet(built.data["sft_short_val"])["messages"][1][0]["content"] == "What is 19 + 1?"
    assert "What" in AutoTokenizer.from_pretrained(built.model_dir).get_vocab()  # learnt from the user's prompts


def test_files_in_s3_are_the_same_data(byo, moto_s3, monkeypatch):
    """An s3:// object (moto server; the endpoint from $STABLE_VERL_S3_ENDPOINT) reads as the local file does, and
    the identity is the content's: the same run ids."""
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True, **moto_s3.options())
    for name in ("short.jsonl", "rl_train.parquet"):
        fs.put(str(byo / name), f"{moto_s3.bucket}/user/{name}")
    monkeypatch.setenv("STABLE_VERL_S3_ENDPOINT", moto_s3.endpoint_url)
    local = TaskData(rl_train=[str(byo / "rl_train.parquet")], sft={"short": {"train": [str(byo / "short.jsonl")]}})
    remote = TaskData(
        rl_train=[f"s3://{moto_s3.bucket}/user/rl_train.parquet"],
        sft={"short": {"train": [f"s3://{moto_s3.bucket}/user/short.jsonl"]}},
    )
    assert normalised_splits(remote) == normalised_splits(local)
    assert task_identity(remote) == task_identity(local)
    with pytest.raises(ValueError, match="does not exist"):
        task_data.read_rows(f"s3://{moto_s3.bucket}/user/nope.parquet")
