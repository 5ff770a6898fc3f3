"""One reward for training and evaluation: the verl overrides it compiles to, and checkpoint scoring with it."""

from __future__ import annotations

import pandas as pd
import pytest

from stable_verl.eval.worker import score_samples
from stable_verl.tasks.reward_fn import RewardFn, builtin_reward, load_reward, reward_overrides

# A user's reward as verl documents it, with no **kwargs: it must get only what the task's kwargs name.
USER_REWARD = '''
def score(data_source, solution_str, ground_truth, extra_info=None):
    """1 for the exact answer; the row's extra_info says how much a near miss is worth."""
    if solution_str.strip() == ground_truth:
        return 1.0
    return extra_info["near_miss"] if solution_str.strip().startswith(ground_truth[0]) else 0.0
'''

DICT_REWARD = """
def score(data_source, solution_str, ground_truth, extra_info=None, scale=1.0):
    hit = solution_str == ground_truth
    return {"score": scale * hit, "acc": hit, "length": float(len(solution_str)), "pred": solution_str}
"""


def _rows(truths: list[str], data_source: str = "my/task", near_miss: float = 0.5) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "data_source": [data_source] * len(truths),
            "prompt": [[{"role": "user", "content": f"q{i}"}] for i in range(len(truths))],
            "reward_model": [{"style": "rule", "ground_truth": t} for t in truths],
            "extra_info": [{"index": i, "near_miss": near_miss} for i in range(len(truths))],
        }
    )


def test_a_user_file_without_kwargs_scores_with_extra_info(tmp_path):
    (tmp_path / "my_reward.py").write_text(USER_REWARD)
    reward = RewardFn(path=str(tmp_path / "my_reward.py"), name="score")
    # prompt 0 (truth "12"): "12" exact = 1, "15" near miss (starts with "1") = 0.5 -> a_0 = 0.75
    # prompt 1 (truth "7"):  "8" = 0, "7" = 1 -> a_1 = 0.5
    results, samples = score_samples(_rows(["12", "7"]), [["12", "15"], ["8", "7"]], reward)
    assert results["avg@2"] == pytest.approx(0.625)
    assert results["avg@2_stderr"] == pytest.approx(0.125)  # std(0.75, 0.5) = 0.1768 / sqrt(2)
    assert results["format_rate"] is None  # the scorer reports no format
    assert results["scores"] == {"score": pytest.approx(0.625)}
    assert [s["score"] for s in samples] == [1.0, 0.5, 0.0, 1.0]


def test_a_dict_scorer_counts_acc_and_keeps_its_numeric_keys(tmp_path):
    (tmp_path / "r.py").write_text(DICT_REWARD)
    reward = RewardFn(path=str(tmp_path / "r.py"), name="score", kwargs={"scale": 2.0})
    results, samples = score_samples(_rows(["ab"]), [["ab", "abcd", "x", "ab"]], reward)
    assert results["avg@4"] == 0.5  # acc (2 of 4), not score (2.0 per hit)
    assert results["scores"] == {"score": 1.0, "acc": 0.5, "length": 2.25}  # (2+4+1+2)/4 = 2.25; pred is a str
    assert samples[1]["pred"] == "abcd"


def test_verl_default_compute_score_on_gsm8k_rows():
    """path null = verl's default_compute_score by data_source; openai/gsm8k reads the '#### <answer>' form."""
    reward = RewardFn()
    rows = _rows(["12", "7"], data_source="openai/gsm8k")
    results, _ = score_samples(rows, [["3 + 9 = 12\n#### 12", "#### 13"], ["#### 7", "seven"]], reward)
    assert results["avg@2"] == 0.5 and results["scores"] == {"score": 0.5}


def test_the_builtin_reward_is_named_by_module():
    assert reward_overrides(builtin_reward(0.25)) == [
        "reward.custom_reward_function.path=pkg://stable_verl.tasks.reward",
        "reward.custom_reward_function.name=compute_score",
        "+reward.custom_reward_function.reward_kwargs.format_bonus=0.25",
    ]
    from stable_verl.tasks.reward import compute_score

    assert load_reward(builtin_reward()) is compute_score


def test_user_and_default_rewards_compile_to_verl_overrides(tmp_path):
    (tmp_path / "my_reward.py").write_text(USER_REWARD)
    user = reward_overrides(RewardFn(path=str(tmp_path / "my_reward.py"), name="score"))
    assert user == [
        f"reward.custom_reward_function.path={tmp_path / 'my_reward.py'}",
        "reward.custom_reward_function.name=score",
    ]
    kwargs = reward_overrides(RewardFn(path="pkg://m.r", kwargs={"tag": "a b", "on": True, "w": [1, 2]}))
    assert kwargs[2:] == [
        '+reward.custom_reward_function.reward_kwargs.tag="a b"',
        "+reward.custom_reward_function.reward_kwargs.on=true",
        "+reward.custom_reward_function.reward_kwargs.w=[1,2]",
    ]
    assert reward_overrides(RewardFn()) == ["reward.custom_reward_function.path=null"]


def test_reward_identity_follows_the_source_bytes_not_the_path(tmp_path):
    for d in ("a", "b"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "r.py").write_text(USER_REWARD)
    a, b = (RewardFn(path=str(tmp_path / d / "r.py"), name="score").identity() for d in ("a", "b"))
    assert a == b
    (tmp_path / "b" / "r.py").write_text(USER_REWARD + "\n# changed\n")
    assert RewardFn(path=str(tmp_path / "b" / "r.py"), name="score").identity() != a


@pytest.mark.parametrize(
    ("reward", "says"),
    [
        (RewardFn(path="/nope/r.py"), "does not exist"),
        (RewardFn(path="pkg://stable_verl.tasks.reward", name="nope"), "has no function 'nope'"),
    ],
)
def test_unloadable_rewards_name_the_fix(reward, says):
    with pytest.raises(ValueError, match=says):
        load_reward(reward)
