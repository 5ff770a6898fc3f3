"""MiniRL inside verl: registry contract, config building, and equivalence with verl's built-ins.

Everything here runs verl's real code (registries, Hydra config composition, agg_loss, built-in losses);
only the Ray/vLLM runtime is left to the integration tests.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
import verl  # noqa: F401  (loads stable-verl's verl plugin)
from tensordict import NonTensorData, NonTensorStack, TensorDict
from verl.trainer.ppo import core_algos
from verl.utils import tensordict_utils as tu
from verl.workers.config import FSDPActorConfig, PolicyLossConfig
from verl.workers.utils.losses import ppo_loss

from stable_verl.config.recipes import Recipe, available_recipes, load_recipe
from stable_verl.core.cispo import cispo_token_loss, group_token_mean, group_token_totals
from stable_verl.core.reference import aggregate_sequences, grpo_token_loss
from stable_verl.verl_ext import cispo_loss
from stable_verl.verl_ext.minirl_loss import MiniRLLossConfig, minirl_policy_loss
from stable_verl.verl_ext.registry import check_adv_estimator, check_policy_loss, register_policy_loss

B, T = 4, 5


def actor_config(loss_agg_mode: str, policy_loss=None, rollout_n: int = 1, **kw) -> FSDPActorConfig:
    cfg = FSDPActorConfig(
        strategy="fsdp",
        rollout_n=rollout_n,
        ppo_micro_batch_size_per_gpu=1,
        loss_agg_mode=loss_agg_mode,
        clip_ratio_low=0.2,
        clip_ratio_high=0.27,
        **({"policy_loss": policy_loss} if policy_loss is not None else {}),
        **kw,
    )
    cfg.global_batch_info.update(dp_size=1, batch_num_tokens=None, global_batch_size=None, loss_scale_factor=None)
    return cfg


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(B, T, generator=g, dtype=torch.float64) * 2  # (B, T) pi_old log-probs
    new = (old + 0.3 * torch.randn(B, T, generator=g, dtype=torch.float64)).requires_grad_()  # pi_theta
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5], dtype=torch.float64)[:, None].expand(B, T)  # (B, T)
    mask = torch.ones(B, T, dtype=torch.bool)
    mask[1, 3:] = False  # a shorter response
    is_ratio = torch.exp(0.5 * torch.randn(B, T, generator=g, dtype=torch.float64)) * mask  # pi_old/mu_old
    return old, new, adv, mask, is_ratio


def test_registry_lookups_and_strictness():
    assert core_algos.get_policy_loss_fn("minirl") is minirl_policy_loss
    check_adv_estimator("minirl")
    with pytest.raises(ValueError, match="already registered"):
        register_policy_loss("minirl")(lambda **kw: None)
    with pytest.raises(ValueError, match="registered: .*minirl"):
        check_policy_loss("minrl")


def test_minirl_estimator_equals_grpo_without_std():
    rewards = torch.zeros(6, T)
    rewards[:, -1] = torch.tensor([1.0, 0.0, 0.0, 1.0, 1.0, 1.0])  # outcome reward on the last token
    mask = torch.ones(6, T)
    index = np.array(["a", "a", "b", "b", "c", "c"])
    ours, _ = core_algos.get_adv_estimator_fn("minirl")(token_level_rewards=rewards, response_mask=mask, index=index)
    theirs, _ = core_algos.compute_grpo_outcome_advantage(rewards, mask, index, norm_adv_by_std_in_grpo=False)
    torch.testing.assert_close(ours, theirs)
    # by hand: group a = {1, 0} -> +0.5, -0.5; b = {0, 1} -> -0.5, +0.5; c = {1, 1} -> 0, 0
    assert ours[:, 0].tolist() == [0.5, -0.5, -0.5, 0.5, 0.0, 0.0]


def test_decoupled_minirl_on_policy_equals_vanilla_ppo_with_tis(batch):
    """On-policy (pi_theta == pi_old), decoupled MiniRL == verl's vanilla PPO given min(pi_old/mu_old, 5) weights.

    Both gradients are -A * min(w, 5) * r * grad log pi / #responses with r = 1 and no token clipped.
    """
    old, _, adv, mask, is_ratio = batch
    new = old.clone().requires_grad_()
    ours_cfg = actor_config("seq-mean-token-sum", MiniRLLossConfig(loss_mode="minirl", truncation="decoupled"))
    ours, _ = minirl_policy_loss(old, new, adv, mask, "seq-mean-token-sum", ours_cfg, is_ratio)
    (g_ours,) = torch.autograd.grad(ours, new)

    new2 = old.clone().requires_grad_()
    theirs, _ = core_algos.get_policy_loss_fn("vanilla")(
        old_log_prob=old,
        log_prob=new2,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode="seq-mean-token-sum",
        config=actor_config("seq-mean-token-sum"),
        rollout_is_weights=is_ratio.clamp(max=5.0),
    )
    (g_theirs,) = torch.autograd.grad(theirs, new2)
    torch.testing.assert_close(g_ours, g_theirs)


def test_full_and_decoupled_truncation_differ_off_policy(batch):
    old, new, adv, mask, is_ratio = batch
    grads = {}
    for mode in ("full", "decoupled"):
        cfg = actor_config("seq-mean-token-sum", MiniRLLossConfig(loss_mode="minirl", truncation=mode))
        loss, _ = minirl_policy_loss(old, new, adv, mask, "seq-mean-token-sum", cfg, is_ratio * 4)
        (grads[mode],) = torch.autograd.grad(loss, new)
    assert not torch.allclose(grads["full"], grads["decoupled"])


def test_minirl_metrics_are_namespaced_floats(batch):
    old, new, adv, mask, is_ratio = batch
    cfg = actor_config("seq-mean-token-sum", MiniRLLossConfig(loss_mode="minirl"))
    _, metrics = minirl_policy_loss(old, new, adv, mask, "seq-mean-token-sum", cfg, is_ratio)
    for key in (
        "actor/train_infer_kl_k1",
        "actor/train_infer_kl_k3",
        "actor/tis/weight_mean",
        "actor/tis/weight_max",
        "actor/tis/truncated_frac",
        "actor/clip/frac",
        "actor/clip/frac_pos_adv",
        "actor/clip/frac_neg_adv",
        "actor/staleness/kl_k3",
        "actor/staleness/abs_log_ratio_mean",
        "actor/staleness/abs_log_ratio_max",
    ):
        assert isinstance(metrics[key], float), key
    assert metrics["actor/train_infer_kl_k3"] >= 0


def test_metric_names_survive_verls_name_based_reduction(batch):
    """verl reduces per-mini-batch values by key name ('max' -> max, 'min' -> min, else mean)."""
    from verl.utils.metric.utils import reduce_metrics

    old, new, adv, mask, is_ratio = batch
    cfg = actor_config("seq-mean-token-sum", MiniRLLossConfig(loss_mode="minirl"))
    _, metrics = minirl_policy_loss(old, new, adv, mask, "seq-mean-token-sum", cfg, is_ratio)
    # two mini-batches: the first on-policy-like (all zeros), the second with these values
    per_minibatch = {k: [0.0, v] for k, v in metrics.items()}
    reduced = reduce_metrics(per_minibatch)
    for key, value in metrics.items():
        expected = value if key.endswith("_max") else value / 2  # max over mini-batches, else the mean
        assert reduced[key] == pytest.approx(expected), key


def test_minirl_without_mu_old_fails_with_the_fix(batch):
    old, new, adv, mask, _ = batch
    cfg = actor_config("seq-mean-token-sum", MiniRLLossConfig(loss_mode="minirl"))
    with pytest.raises(ValueError, match="rollout_is=token"):
        minirl_policy_loss(old, new, adv, mask, "seq-mean-token-sum", cfg, None)


def test_grpo_recipe_is_appendix_a_grpo(batch):
    old, new, adv, mask, _ = batch
    recipe = load_recipe("grpo")
    cfg = actor_config(recipe.loss_agg_mode, clip_ratio_c=recipe.dual_clip)
    theirs, _ = core_algos.get_policy_loss_fn(recipe.loss_mode)(
        old_log_prob=old,
        log_prob=new,
        advantages=adv,
        response_mask=mask,
        loss_agg_mode=recipe.loss_agg_mode,
        config=cfg,
        rollout_is_weights=None,
    )
    ours = aggregate_sequences(grpo_token_loss(new, old, adv, mask, 0.2, 0.27), mask, length_norm=True)
    torch.testing.assert_close(theirs, ours)


UIDS = ["p0", "p0", "p1", "p1"]  # the fixture's 4 responses as 2 prompt groups of G = 2 (rollout_n)


def test_cispo_recipe_is_appendix_a_cispo(batch):
    """The recipe's loss, looked up in verl's registry, against Appendix A: each group / its own token count."""
    old, new, adv, mask, _ = batch
    recipe = load_recipe("cispo")
    cfg = actor_config(recipe.loss_agg_mode, PolicyLossConfig(loss_mode=recipe.loss_mode), rollout_n=2)
    totals = group_token_totals(UIDS, mask)
    assert totals.tolist() == [8.0, 8.0, 10.0, 10.0]  # group p0: 5 + 3 tokens (row 1 is short), p1: 5 + 5
    with cispo_loss.group_tokens(totals[:, None].expand(B, T)):
        theirs, metrics = core_algos.get_policy_loss_fn(recipe.loss_mode)(
            old_log_prob=old,
            log_prob=new,
            advantages=adv,
            response_mask=mask,
            loss_agg_mode=recipe.loss_agg_mode,
            config=cfg,
            rollout_is_weights=None,
        )
    ours = group_token_mean(cispo_token_loss(new, old, adv, mask, 0.2, 0.27), mask, totals, num_groups=2)
    torch.testing.assert_close(theirs, ours)
    (g_theirs,) = torch.autograd.grad(theirs, new, retain_graph=True)
    (g_ours,) = torch.autograd.grad(ours, new, retain_graph=True)
    torch.testing.assert_close(g_theirs, g_ours)
    assert 0 < metrics["actor/pg_clipfrac"] <= 1 and isinstance(metrics["actor/ppo_kl"], float)

    # verl's own cispo + token-mean divides by all 18 tokens: a different gradient when group lengths differ
    verls, _ = core_algos.get_policy_loss_fn("cispo")(
        old_log_prob=old, log_prob=new, advantages=adv, response_mask=mask, config=actor_config("token-mean")
    )
    (g_verl,) = torch.autograd.grad(verls, new)
    assert not torch.allclose(g_verl, g_ours)


def test_cispo_group_refuses_to_run_without_group_counts_or_with_another_aggregation(batch):
    old, new, adv, mask, _ = batch
    cfg = actor_config("token-mean", PolicyLossConfig(loss_mode="cispo_group"), rollout_n=2)
    loss = core_algos.get_policy_loss_fn("cispo_group")
    with pytest.raises(ValueError, match="no group token counts: .*stable_sync"):
        loss(old_log_prob=old, log_prob=new, advantages=adv, response_mask=mask, config=cfg)
    with cispo_loss.group_tokens(torch.ones(B, T)), pytest.raises(ValueError, match="set loss_agg_mode=token-mean"):
        loss(old, new, adv, mask, loss_agg_mode="seq-mean-token-sum", config=cfg)


def _nested(rows) -> torch.Tensor:
    return torch.nested.as_nested_tensor([torch.as_tensor(r) for r in rows], layout=torch.jagged)


def test_cispo_group_through_verls_ppo_loss_by_hand():
    """The path of a real update: the trainer's batch field -> the worker's wrapper -> verl's ppo_loss -> our loss.

    Two prompts, G = 2: group a = responses of 2 and 1 tokens (3 tokens), group b = 1 and 1 (2 tokens).
    On-policy (r = 1, no clipping), so each token's loss is -A log pi:
      a: A = [+1, -1], log pi = [[-1, -2], [-3]]   -> token sum (1 + 2) - 3 = 0, / 3 tokens = 0
      b: A = [+1, +1], log pi = [[-0.5], [-1.5]]   -> token sum 0.5 + 1.5 = 2,  / 2 tokens = 1
    Appendix A: (0 + 1) / 2 groups = 0.5; verl's token-mean would give 2 / 5 = 0.4.
    """
    resp_logp = [[-1.0, -2.0], [-3.0], [-0.5], [-1.5]]
    adv = [[1.0, 1.0], [-1.0], [1.0], [1.0]]
    mask = _nested([[1, 1], [1], [1], [1]])
    # what the trainer reads from TransferQueue: verl's uid (non-tensor strings) and the nested response mask
    from_tq = TensorDict({"response_mask": mask}, batch_size=[4])
    from_tq["uid"] = NonTensorStack(*(NonTensorData(u) for u in ["a", "a", "b", "b"]))
    data = TensorDict(
        {
            "prompts": _nested([[7, 8]] * 4),  # 2 prompt tokens per response
            "responses": _nested([[1, 2], [3], [4], [5]]),
            "response_mask": mask,
            "old_log_probs": _nested(resp_logp),
            "advantages": _nested(adv),
            **cispo_loss.group_tokens_batch(from_tq),
        },
        batch_size=[4],
    )
    tu.assign_non_tensor(data, dp_size=1, batch_num_tokens=5, global_batch_size=4)
    # the model's log-probs over prompt + response, left-shifted by one: the response's sit at [1, 1 + |y|)
    full = [[0.0, *r, 0.0] for r in resp_logp]
    log_probs = torch.nested.as_nested_tensor([torch.tensor(r, requires_grad=True) for r in full], layout=torch.jagged)
    cfg = actor_config("token-mean", PolicyLossConfig(loss_mode="cispo_group"), rollout_n=2)
    assert torch.nested.to_padded_tensor(data[cispo_loss.GROUP_TOKENS], 0).tolist() == [[3, 3], [3, 0], [2, 0], [2, 0]]

    loss, metrics = cispo_loss.with_group_tokens({"log_probs": log_probs}, data, inner=partial(ppo_loss, config=cfg))
    assert loss.item() == pytest.approx(0.5)
    assert metrics["actor/pg_clipfrac"].aggregate() == 0.0  # on-policy: r = 1, nothing clipped

    del data[cispo_loss.GROUP_TOKENS]  # a batch the stable_sync trainer did not fill
    with pytest.raises(ValueError, match="needs the batch field 'group_response_tokens'"):
        cispo_loss.with_group_tokens({"log_probs": log_probs}, data, inner=partial(ppo_loss, config=cfg))


def _verl_config(recipe):
    """verl's own ppo_trainer config composed with the recipe's overrides, and the actor dataclass built from it."""
    from hydra import compose, initialize_config_module
    from verl.utils.config import omega_conf_to_dataclass

    with initialize_config_module("verl.trainer.config", version_base=None):
        base = [
            "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=2",
            "actor_rollout_ref.actor.ppo_mini_batch_size=4",
        ]
        cfg = compose("ppo_trainer", overrides=base + recipe.overrides())
    return cfg, omega_conf_to_dataclass(cfg.actor_rollout_ref.actor)


@pytest.mark.parametrize("name", available_recipes())
def test_every_recipe_builds_verls_config(name):
    """Compose verl's own ppo_trainer config with the recipe's overrides and build the actor dataclass."""
    recipe = load_recipe(name)
    recipe.check_registered()
    cfg, actor = _verl_config(recipe)
    assert actor.policy_loss.loss_mode == recipe.loss_mode
    assert actor.loss_agg_mode == recipe.loss_agg_mode
    if recipe.uses_minirl_loss:
        assert isinstance(actor.policy_loss, MiniRLLossConfig)
        assert actor.policy_loss.tis_cap == recipe.minirl.tis_cap
        assert actor.policy_loss.train_infer_is == recipe.minirl.train_infer_is
        assert (cfg.algorithm.rollout_correction.rollout_is == "token") == recipe.minirl.train_infer_is
    assert actor.fsdp_config.router_replay.mode == recipe.routing_replay  # verl's own EngineRouterReplayConfig
    assert cfg.actor_rollout_ref.rollout.enable_rollout_routing_replay == recipe.rollout_routes


def test_paper_grid_recipes_exist():
    assert {
        "minirl",
        "minirl_lennorm",
        "minirl_no_is",
        "minirl_offpolicy",
        "minirl_offpolicy_noclip",
        "minirl_r2",
        "minirl_r2_noclip",
        "minirl_r3",
        "minirl_r3_lennorm",
        "minirl_r3_no_is",
        "dppo_tv",
        "grpo",
        "cispo",
    } <= set(available_recipes())
    assert load_recipe("minirl_offpolicy").minibatches == 2
    assert load_recipe("minirl_lennorm").loss_agg_mode == "seq-mean-token-mean"
    assert load_recipe("dppo_tv").loss_mode == "dppo_tv"  # verl's built-in DPPO-Binary-TV


def test_dppo_tv_recipe_reaches_verls_loss_with_its_thresholds():
    """verl's dppo_tv reads clip_ratio_low/high as TV thresholds on pi_theta - pi_old and clip_ratio_c as its cap."""
    _, actor = _verl_config(load_recipe("dppo_tv"))
    assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.clip_ratio_c) == (0.2, 0.27, 20.0)
    actor.global_batch_info.update(dp_size=1, batch_num_tokens=None, global_batch_size=None, loss_scale_factor=None)
    # one response, two tokens, A = +1; pi_old = 0.5 on both; pi_theta = 0.6 (moved 0.1 <= 0.27: kept) and
    # 0.8 (moved 0.3 > 0.27: masked). Loss = -(r_1 * log 0.6) summed over kept tokens (seq-mean-token-sum, 1 response)
    old = torch.log(torch.tensor([[0.5, 0.5]], dtype=torch.float64))
    new = torch.log(torch.tensor([[0.6, 0.8]], dtype=torch.float64))
    adv, mask = torch.ones(1, 2, dtype=torch.float64), torch.ones(1, 2, dtype=torch.bool)
    loss, metrics = core_algos.get_policy_loss_fn("dppo_tv")(old, new, adv, mask, "seq-mean-token-sum", actor)
    assert loss.item() == pytest.approx(-(0.6 / 0.5) * torch.log(torch.tensor(0.6)).item())
    assert metrics["actor/pg_clipfrac"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("nope", [], "unknown recipe 'nope'; available: "),
        ("minirl", ["eps_low=1.5"], "eps_low"),
        ("minirl", ["minirl.tis_cap=0"], "tis_cap"),
        ("minirl", ["minirl.truncation=sometimes"], "truncation"),
        ("minirl", ["minibatches=0"], "minibatches"),
        ("minirl", ["loss_agg_mode=mean"], "loss_agg_mode"),
        ("minirl_r3", ["rollout_routes=false"], "R3 replays vLLM's routes; set rollout_routes: true"),
        ("minirl", ["routing_replay=R4"], "routing_replay must be one of"),
    ],
)
def test_bad_recipes_fail_when_loaded(name, overrides, message):
    with pytest.raises(ValueError, match=message):
        load_recipe(name, overrides)


def test_unknown_loss_or_estimator_fails_before_launch():
    with pytest.raises(ValueError, match="unknown policy loss 'minirll'"):
        Recipe(name="x", loss_mode="minirll").check_registered()
    with pytest.raises(ValueError, match="unknown advantage estimator 'grp'"):
        Recipe(name="x", adv_estimator="grp").check_registered()


def test_routing_replay_refuses_a_dense_model_before_launch(tmp_path, tokenizer):
    from stable_verl.models.tiny import TinyModelSpec, save_tiny_model

    dense = save_tiny_model(tmp_path / "dense", TinyModelSpec(kind="dense"), tokenizer, seed=0)
    moe = save_tiny_model(tmp_path / "moe", TinyModelSpec(), tokenizer, seed=0)
    for name in ("minirl_r2", "minirl_r3"):
        load_recipe(name).check_model(moe)
        with pytest.raises(ValueError, match=r"uses MoE routing replay, but the model at .* is 'qwen3', not a"):
            load_recipe(name).check_model(dense)
    load_recipe("minirl").check_model(dense)  # no replay: any model
