"""The arithmetic task, teacher styles, dataset schemas and the reward function."""

from __future__ import annotations

import pandas as pd
import pytest

from stable_verl.tasks.arithmetic import Problem, sample_problems
from stable_verl.tasks.datasets import DATA_SOURCE, TaskSpec, write_task_data
from stable_verl.tasks.reward import compute_score, extract_answer
from stable_verl.tasks.teachers import TEACHERS, get_teacher, solution, takes_shortcut
from stable_verl.train.assets import seeded_sft_file


def test_left_to_right_evaluation_by_hand():
    # 7 + 5 = 12, 12 - 3 = 9, 9 * 2 = 18 (left to right, no precedence)
    p = Problem(operands=(7, 5, 3, 2), ops=("+", "-", "*"), difficulty=3)
    assert p.expression == "7 + 5 - 3 * 2"
    assert p.partial_results() == [12, 9, 18]
    assert p.answer == 18


def test_sampling_is_deterministic_and_distinct():
    a = sample_problems(50, difficulty=2, seed=3)
    b = sample_problems(50, difficulty=2, seed=3)
    assert a == b
    assert len({p.expression for p in a}) == 50
    assert all(len(p.ops) == 2 for p in a)


def test_difficulty_must_be_positive():
    with pytest.raises(ValueError, match="difficulty"):
        sample_problems(1, difficulty=0, seed=0)


@pytest.mark.parametrize("teacher", sorted(TEACHERS))
def test_every_teacher_solution_scores_one(teacher):
    for p in sample_problems(20, difficulty=3, seed=1):
        solution = get_teacher(teacher)(p)
        assert compute_score(DATA_SOURCE, solution, str(p.answer)) == {"score": 1.0, "acc": 1.0, "format": 1.0}


def test_teacher_styles_differ():
    p = Problem(operands=(3, 4, 1), ops=("+", "-"), difficulty=2)
    assert TEACHERS["terse"](p) == "3+4=7; 7-1=6\n#### 6"
    assert TEACHERS["stepwise"](p) == "3 + 4 = 7\n7 - 1 = 6\n#### 6"
    assert TEACHERS["verbose"](p).startswith("Let us work left to right. 3 plus 4 gives 7.")
    with pytest.raises(ValueError, match="unknown teacher"):
        get_teacher("oracle")


def test_shortcut_habit_answers_directly_on_its_share_of_problems():
    p = Problem(operands=(3, 4, 1), ops=("+", "-"), difficulty=2)
    assert solution("stepwise", p, 0.0) == "3 + 4 = 7\n7 - 1 = 6\n#### 6"
    assert solution("stepwise", p, 1.0) == "#### 6"
    # each sample of a problem draws its own habit: over many problems, two samples disagree about half the time
    problems_2 = sample_problems(400, difficulty=2, seed=4)
    disagree = sum(takes_shortcut("terse", q, 0.5, 0) != takes_shortcut("terse", q, 0.5, 1) for q in problems_2)
    assert 0.4 < disagree / 400 < 0.6
    problems = sample_problems(2000, difficulty=2, seed=2)
    for rate in (0.25, 0.6):
        share = sum(takes_shortcut("verbose", q, rate) for q in problems) / len(problems)
        assert share == pytest.approx(rate, abs=0.035)  # 3.5 binomial standard errors at n = 2000
    # fixed per (teacher, problem): a lower rate's shortcuts are a subset of a higher one's
    assert all(takes_shortcut("terse", q, 0.6) for q in problems if takes_shortcut("terse", q, 0.3))


def test_sft_data_follows_each_teachers_shortcut_rate(tmp_path):
    for rate, samples in ((0.0, 1), (0.5, 2)):
        spec = TaskSpec(n_sft=400, n_rl_train=16, n_bench=16, shortcut_rate=rate, sft_samples=samples)
        paths = write_task_data(tmp_path / str(rate), spec)
        for teacher in TEACHERS:
            messages = pd.read_parquet(paths[f"sft_{teacher}_train"])["messages"]
            assert len(messages) == 400 * samples and len({m[0]["content"] for m in messages}) == 400
            direct_share = sum(m[1]["content"].startswith("####") for m in messages) / len(messages)
            assert direct_share == pytest.approx(rate, abs=0.06)  # 3.4 binomial standard errors at n = 800


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"shortcut_rate": -0.1}, r"task.shortcut_rate must be in \[0, 1\]"),
        ({"shortcut_rate": 1.5}, r"task.shortcut_rate must be in \[0, 1\]"),
        ({"sft_samples": 0}, "task.sft_samples must be >= 1"),
    ],
)
def test_bad_teacher_settings_are_refused(change, message):
    with pytest.raises(ValueError, match=message):
        TaskSpec(**change)


def test_reward_exact_match_and_format():
    assert extract_answer("x\n#### -12") == -12
    assert extract_answer("#### 3 then #### 4") == 4  # the last answer counts
    assert extract_answer("the answer is 4") is None
    assert compute_score(DATA_SOURCE, "#### 5", "6") == {"score": 0.0, "acc": 0.0, "format": 1.0}
    assert compute_score(DATA_SOURCE, "five", "5") == {"score": 0.0, "acc": 0.0, "format": 0.0}
    # shaping: a well-formed wrong answer earns the bonus only, a right one earns 1 + bonus
    assert compute_score(DATA_SOURCE, "#### 5", "6", format_bonus=0.1)["score"] == pytest.approx(0.1)
    assert compute_score(DATA_SOURCE, "#### 6", "6", format_bonus=0.1)["score"] == pytest.approx(1.1)


def test_written_splits_follow_verl_schema_and_are_disjoint(tmp_path):
    spec = TaskSpec(n_rl_train=40, n_rl_val=8, n_sft=64, n_bench=16)
    paths = write_task_data(tmp_path, spec)
    rl = pd.read_parquet(paths["rl_train"])
    assert list(rl.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info"]
    row = rl.iloc[0]
    assert row.data_source == DATA_SOURCE
    assert row.prompt[0]["role"] == "user"
    assert row.reward_model["style"] == "rule"
    assert int(row.reward_model["ground_truth"]) == eval_left_to_right(row.extra_info["expression"])
    sft = pd.read_parquet(paths["sft_verbose_train"])
    assert [m["role"] for m in sft.iloc[0].messages] == ["user", "assistant"]
    expressions = {
        name: set(pd.read_parquet(paths[name]).extra_info.map(lambda e: e["expression"]))
        for name in ("bench_id", "bench_hard", "rl_val", "rl_train")
    }
    names = list(expressions)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not expressions[a] & expressions[b], (a, b)
    hard = pd.read_parquet(paths["bench_hard"])
    assert all(e["difficulty"] == spec.hard_difficulty for e in hard.extra_info)


def eval_left_to_right(expression: str) -> int:
    tokens = expression.split()
    value = int(tokens[0])
    for op, x in zip(tokens[1::2], tokens[2::2], strict=True):
        value = {"+": value + int(x), "-": value - int(x), "*": value * int(x)}[op]
    return value


def test_max_operand_sets_the_operand_range_and_the_task_space(tmp_path):
    problems = sample_problems(1500, difficulty=1, seed=0, max_operand=29)
    assert max(x for p in problems for x in p.operands) == 29
    assert len({p.expression for p in problems}) == 1500  # > the 800 problems of the default range 0..19
    with pytest.raises(ValueError, match="cannot draw"):
        sample_problems(801, difficulty=1, seed=0)
    paths = write_task_data(tmp_path, TaskSpec(max_operand=29, n_sft=800, n_rl_train=512, n_bench=128))
    bench_id = pd.read_parquet(paths["bench_id"])
    hard = pd.read_parquet(paths["bench_hard"])
    id_operands = [int(x) for e in bench_id.extra_info for x in e["expression"].split() if x.isdigit()]
    hard_operands = [int(x) for e in hard.extra_info for x in e["expression"].split() if x.isdigit()]
    assert max(id_operands) <= 29 and max(id_operands) > 19  # the in-distribution splits use max_operand
    assert max(hard_operands) <= 29  # bench_hard keeps its difficulty's default range (10 * 2 + 9)


def test_max_operand_must_be_positive():
    with pytest.raises(ValueError, match="max_operand"):
        TaskSpec(max_operand=0)


def test_sft_seed_sets_the_data_order(tmp_path):
    # verl's SFT sampler ignores trainer.seed, so the seed lives in the file's row order: same rows, its own order
    paths = write_task_data(tmp_path / "data", TaskSpec(n_sft=64, n_rl_train=16, n_bench=16))
    train = paths["sft_stepwise_train"]
    assert seeded_sft_file(train, 0, tmp_path / "run0") == train  # seed 0: the file as written
    orders = {}
    for seed in (1, 2, 1):
        seeded = seeded_sft_file(train, seed, tmp_path / f"run{seed}")
        orders.setdefault(seed, []).append([m[0]["content"] for m in pd.read_parquet(seeded)["messages"]])
    original = [m[0]["content"] for m in pd.read_parquet(train)["messages"]]
    assert orders[1][0] == orders[1][1]  # deterministic
    assert sorted(orders[1][0]) == sorted(orders[2][0]) == sorted(original)
    assert len({tuple(original), tuple(orders[1][0]), tuple(orders[2][0])}) == 3
