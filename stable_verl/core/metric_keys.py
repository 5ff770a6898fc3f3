"""Metric keys shared by the code that logs them (verl_ext) and the code that reads them (reports, browsing).

Slash-namespaced as verl logs them. A tuple of keys is read as "the first key a run logged". The one list of the
metrics that matter is :data:`KEY_METRIC_PATTERNS` (what ``stable-verl runs show`` prints and a run's page plots);
:data:`CURVES` are the ones the reports' figures draw against steps (each matches a pattern of that list), and
:data:`PAPER_CURVES` the stability grid's subset of them.
"""

from typing import NamedTuple

TRAIN_INFER_KL_K1 = "actor/train_infer_kl_k1"
"""KL(mu_old || pi_old), k1 estimator, from MiniRL's loss (verl_ext.minirl_loss)."""
TRAIN_INFER_KL_K3 = "actor/train_infer_kl_k3"
"""The same KL, k3 estimator."""
ROLLOUT_CORR_KL_K3 = "rollout_corr/k3_kl"
"""verl's rollout-correction estimate of the train-inference KL, k3."""
ROLLOUT_CORR_KL_K1 = "rollout_corr/kl"
"""verl's rollout-correction estimate, k1."""

KL_K3_KEYS = (TRAIN_INFER_KL_K3, ROLLOUT_CORR_KL_K3)
"""Train-inference KL (k3) for the collapse detector: MiniRL's own estimator, else verl's."""
KL_KEYS = (*KL_K3_KEYS, ROLLOUT_CORR_KL_K1)
"""Train-inference KL for plots: a k3 estimate, else verl's k1."""

ENTROPY_PER_TOKEN = "actor/entropy_per_token"
"""The stable_sync trainer's per-token entropy. Never verl's actor/entropy: it is aggregated with the loss's
loss_agg_mode (per-token entropy x length under MiniRL's seq-mean-token-sum), so not comparable across recipes."""
ENTROPY_KEYS = (ENTROPY_PER_TOKEN,)
REWARD_KEYS = ("reward/acc", "critic/score/mean")
"""Training reward: exact-match accuracy (our reward function), else verl's score."""
LENGTH_KEYS = ("response_length/mean",)
COLLAPSE_WARNING = "stability/collapse_warning"
"""1.0 from the step the entropy+KL early warning fired (core.collapse, verl_ext.trainer): a warning, not a verdict
(the verdict is an outcome: core.collapse_verdict)."""
COLLAPSE_LEGACY = "stability/collapse"
"""The same warning as stores written before December 2026 logged it."""
COLLAPSE_WARNING_KEYS = (COLLAPSE_WARNING, COLLAPSE_LEGACY)
"""Read the warning from new and old stores alike."""
GRAD_NORM = "actor/grad_norm"
"""verl's actor gradient norm (before clipping)."""
IS_TRUNCATED_FRAC = "actor/tis/truncated_frac"
"""Share of tokens whose train-inference IS weight hit its cap (verl_ext.minirl_loss)."""


class Curve(NamedTuple):
    """One metric-against-step panel of a figure: its title, its keys (the first a run logged), log scale or not."""

    title: str
    keys: tuple[str, ...]
    log: bool


CURVES = (
    Curve("train-inference KL", KL_KEYS, True),
    Curve("training reward", REWARD_KEYS, False),
    Curve("per-token entropy", ENTROPY_KEYS, False),
    Curve("response length", LENGTH_KEYS, False),
)
"""The curves the reports draw beside the benchmark score, in panel order (the cold-start comparison draws all)."""
PAPER_CURVES = CURVES[:3]
"""The paper's figure (the stability grid's per-N panels): KL, reward and entropy beside the score, on purpose no
response length, so each N's figure keeps the paper's four panels."""

KEY_METRIC_PATTERNS = (
    "reward/*",
    REWARD_KEYS[1],
    "critic/rewards/mean",
    "*acc*",
    "actor/train_infer_kl*",
    "rollout_corr/*kl*",
    "training/rollout_probs_diff_*",
    "actor/tis/*",
    "actor/ppo_kl",
    "actor/pg_clipfrac*",
    ENTROPY_PER_TOKEN,
    *COLLAPSE_WARNING_KEYS,
    *LENGTH_KEYS,
    "response_length/clip_ratio",
    "actor/pg_loss",
    "train/loss",
    "val/loss",
)
"""The metrics that matter (fnmatch patterns, in display order), printed by ``stable-verl runs show`` and plotted on a
run's page: reward and accuracy, the train-inference mismatch (verl's rollout-vs-train prob diff, rollout-correction
KL, MiniRL's diagnostics), truncated-IS weights, per-token entropy (never verl's actor/entropy, see
:data:`ENTROPY_PER_TOKEN`), the entropy+KL collapse warning (new and old name), clipping, response length and the
losses (SFT runs)."""
