"""The stable_sync trainer's per-step diagnostics, by hand: per-token entropy, the collapse flag and its resume.

These call the functions the trainer runs on verl's batch fields (nested per-token tensors, as TransferQueue hands
them over) and on the metric keys verl and our losses log; verl's Ray/vLLM runtime is left to the integration tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from verl.trainer.ppo.core_algos import agg_loss

from stable_verl.core.collapse import CollapseDetector
from stable_verl.core.metric_keys import ENTROPY_PER_TOKEN as ENTROPY_KEY
from stable_verl.verl_ext.trainer.metrics import (
    COLLAPSE_STATE,
    collapse_metric,
    entropy_per_token,
    load_collapse_state,
    resumed_step_folder,
    save_collapse_state,
)


def _nested(rows) -> torch.Tensor:
    return torch.nested.as_nested_tensor([torch.tensor(r) for r in rows], layout=torch.jagged)


# ------------------------------------------------------------------------------------------ per-token entropy
def test_entropy_per_token_is_the_mean_over_valid_tokens_by_hand():
    # Two real responses (3 tokens, 1 token) and one verl padding row (is_padding: synthetic, excluded).
    entropy = _nested([[1.0, 2.0, 3.0], [4.0], [100.0]])
    mask = _nested([[1, 1, 1], [1], [1]])
    padding = np.array([False, False, True])
    # (1 + 2 + 3 + 4) / 4 tokens = 2.5
    assert entropy_per_token(entropy, mask, padding) == {ENTROPY_KEY: pytest.approx(2.5)}

    # verl's actor/entropy aggregates the same values with the actor's loss_agg_mode, so it is not per-token:
    # seq-mean-token-sum (MiniRL) -> (6 + 4) / 2 = 5 (entropy x length); seq-mean-token-mean -> (2 + 4) / 2 = 3
    ent, m = torch.nested.to_padded_tensor(entropy, 0.0)[:2], torch.nested.to_padded_tensor(mask, 0)[:2].bool()
    assert agg_loss(ent, m, "seq-mean-token-sum").item() == pytest.approx(5.0)
    assert agg_loss(ent, m, "seq-mean-token-mean").item() == pytest.approx(3.0)


def test_entropy_per_token_skips_masked_tokens_and_reports_nothing_without_tokens():
    entropy = _nested([[1.0, 50.0, 3.0], [4.0]])
    mask = _nested([[1, 0, 1], [1]])  # a masked token inside a response (e.g. a tool turn)
    assert entropy_per_token(entropy, mask, np.array([False, False])) == {ENTROPY_KEY: pytest.approx(8 / 3)}
    assert entropy_per_token(entropy, mask, np.array([True, True])) == {}  # no placeholder value


# ----------------------------------------------------------------------------------------- collapse metric
def _rows(entropy_per_tok, verl_entropy, kl):
    """Metrics rows with the keys a MiniRL run logs (verl's entropy under seq-mean-token-sum)."""
    return [
        {ENTROPY_KEY: h, "actor/entropy": v, "actor/train_infer_kl_k3": k}
        for h, v, k in zip(entropy_per_tok, verl_entropy, kl, strict=True)
    ]


def _flags(rows, detector=None):
    detector = detector or CollapseDetector()
    return [collapse_metric(detector, row)["stability/collapse_warning"] for row in rows]


def test_collapse_metric_fires_on_a_collapsing_run():
    # Per-token entropy 1.2 for 4 steps, then it falls while the KL rises (a collapse as in the paper's Fig. 2).
    # Entropy threshold (1 - 0.5) * 1.2 = 0.6; KL reference = min after warmup = 1e-3 (step 4) -> spike > 1e-2.
    # step 5: entropy 0.8 (not < 0.6), KL 0.005 (not > 0.01) -> 0; step 6: 0.5 < 0.6 and 0.05 > 0.01 -> 1, latched.
    rows = _rows(
        [1.2, 1.2, 1.2, 1.2, 0.8, 0.5, 0.4, 1.2],
        [60.0] * 8,
        [1e-3, 1e-3, 1e-3, 1e-3, 5e-3, 5e-2, 0.1, 1e-3],
    )
    assert _flags(rows) == [0, 0, 0, 0, 0, 1, 1, 1]


def test_collapse_metric_ignores_shorter_responses():
    # Responses shrink from 56 to 8 tokens at a constant per-token entropy of 1.0, while the KL spikes: verl's
    # actor/entropy (token sum per response) falls 7x, but the policy's entropy did not drop, so no collapse.
    lengths = [56, 56, 56, 56, 30, 8, 8]
    rows = _rows([1.0] * 7, [1.0 * n for n in lengths], [1e-3] * 4 + [0.05, 0.1, 0.1])
    assert _flags(rows) == [0] * 7


def test_collapse_metric_uses_verls_kl_when_minirls_is_absent_and_needs_both_keys():
    detector = CollapseDetector(warmup_steps=0)
    warning = "stability/collapse_warning"
    assert collapse_metric(detector, {ENTROPY_KEY: 1.0, "rollout_corr/k3_kl": 1e-3}) == {warning: 0.0}
    assert collapse_metric(detector, {ENTROPY_KEY: 0.4, "rollout_corr/k3_kl": 0.1}) == {warning: 1.0}
    assert collapse_metric(CollapseDetector(), {"actor/entropy": 1.0, "actor/train_infer_kl_k3": 1e-3}) == {}
    assert collapse_metric(CollapseDetector(), {ENTROPY_KEY: 1.0}) == {}


def test_collapse_metric_survives_a_zero_kl_start():
    # fp32 on-policy: KL exactly 0 for the first steps; a later KL of 1e-8 is noise, not a spike (floor 1e-6).
    rows = _rows([1.0] * 4 + [0.3, 0.3], [50.0] * 6, [0.0] * 4 + [1e-8, 1e-8])
    assert _flags(rows) == [0] * 6


# ------------------------------------------------------------------------------------------------ resume
def test_collapse_state_is_saved_beside_the_checkpoint_and_restored(tmp_path):
    # The run flags at step 6 (as in test_collapse_metric_fires_on_a_collapsing_run), is checkpointed at step 6
    # and resumed: the flag stays 1 although the later steps look healthy.
    rows = _rows([1.2] * 4 + [0.8, 0.5, 1.2, 1.2], [60.0] * 8, [1e-3] * 4 + [5e-3, 5e-2, 1e-3, 1e-3])
    before = CollapseDetector()
    assert _flags(rows[:6], before) == [0, 0, 0, 0, 0, 1]
    folder = tmp_path / "ckpt" / "global_step_6"
    path = save_collapse_state(before, str(folder))
    assert path == str(folder / COLLAPSE_STATE)

    resumed = CollapseDetector()
    assert load_collapse_state(resumed, str(folder))
    assert _flags(rows[6:], resumed) == [1, 1]
    assert _flags(rows[6:], CollapseDetector()) == [0, 0]  # what a restart without the state logged
    assert not load_collapse_state(CollapseDetector(), str(tmp_path / "ckpt" / "global_step_3"))  # no file


def test_resumed_step_folder_matches_verls_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    auto = OmegaConf.create({"resume_mode": "auto", "default_local_dir": "checkpoints/run", "resume_from_path": None})
    assert resumed_step_folder(auto, 6) == str(tmp_path / "checkpoints/run/global_step_6")
    path = OmegaConf.create(
        {"resume_mode": "resume_path", "default_local_dir": "x", "resume_from_path": "/abs/run/global_step_4"}
    )
    assert resumed_step_folder(path, 4) == "/abs/run/global_step_4"


# ------------------------------------------------------------------------------------------ verl's sync paths
def test_stable_sync_takes_verls_synchronous_paths_with_a_short_poll():
    """verl's v1 trainer keys its sync code on ``trainer_mode == "sync"``; under the name ``stable_sync`` it would
    build the asynchronous replay buffer (and fetch prompts one by one, checkpoint TransferQueue)."""
    import verl.trainer.config as verl_config
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    from stable_verl.verl_ext.trainer import TRAINER_NAME, StableTrainerSync
    from stable_verl.verl_ext.trainer.sync_paths import REPLAY_POLL_S

    config = OmegaConf.load(f"{verl_config.__path__[0]}/_generated_ppo_trainer.yaml")
    config.trainer.v1.trainer_mode = TRAINER_NAME
    trainer = StableTrainerSync.__new__(StableTrainerSync)  # only the replay-buffer part of verl's __init__
    trainer.config = config
    trainer.trainer_mode = config.trainer.v1.trainer_mode  # as verl's PPOTrainer.__init__ assigns it
    assert trainer.trainer_mode == "sync"

    buffer = trainer._build_replay_buffer()
    assert type(buffer) is ReplayBuffer  # not ReplayBufferAsync
    assert buffer.poll_interval == REPLAY_POLL_S < 2.0  # verl's default quantised every step's gen to 2 s
    assert buffer.gen_batch_size == config.data.train_batch_size  # the whole batch at once, not 1 by 1


def test_the_collapse_state_is_written_before_the_store_uploads_and_read_after_it_restores():
    """``StepDiagnostics`` and ``StoreCheckpoints`` both override verl's checkpoint save and load: the collapse
    state must be in the folder before the upload and be read only once the store restored the folder, so
    ``StepDiagnostics`` must come first in the ``super()`` chain."""
    from stable_verl.verl_ext.trainer import StableTrainerSync
    from stable_verl.verl_ext.trainer.metrics import StepDiagnostics
    from stable_verl.verl_ext.trainer.store import StoreCheckpoints

    mro = StableTrainerSync.__mro__
    assert mro.index(StepDiagnostics) < mro.index(StoreCheckpoints)
