"""Routing replay on real tiny transformers MoE models (random weights, float32, CPU): no mocks."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
import transformers as tf
from torch import nn
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from stable_verl.core.routing import (
    SUPPORTED_MODEL_TYPES,
    RoutingReplay,
    routes_from_padded,
    routes_to_padded,
)
from tests.support.moe_models import FAMILIES, VOCAB, build, config, perturb_routers, routers

B, S = 2, 6


def token_logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)  # (B, S)


@contextmanager
def experts_inputs(model: nn.Module) -> Iterator[list[tuple[torch.Tensor, torch.Tensor]]]:
    """(top_k_index, top_k_weights) each experts module receives, in call order (recompute calls included)."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    mods = [layer.mlp.experts for layer in model.model.layers if hasattr(layer.mlp, "experts")]
    hooks = [m.register_forward_pre_hook(lambda _m, args: seen.append((args[1], args[2].detach()))) for m in mods]
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


def record(rr: RoutingReplay, model: nn.Module, ids: torch.Tensor, **kw) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad(), rr.record():
        logits = model(ids, **kw).logits
    return rr.routes(), logits


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads; one thread avoids OpenMP stalls on a busy shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (B, S), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("family", FAMILIES)
def test_replay_of_own_routes_reproduces_logprobs(family, ids):
    model = build(family)
    rr = RoutingReplay.attach(model)
    assert rr.layer_indices == ([1, 2] if family == "deepseek_v3" else [0, 1])
    assert [r.routing_replay_layer for r in routers(model)] == rr.layer_indices
    routes, logits = record(rr, model, ids)
    assert routes.shape == (B * S, rr.num_layers, 2) and routes.dtype == torch.uint8
    with torch.no_grad(), rr.replay(routes):
        replayed = model(ids).logits
    assert rr.mode == "off"
    torch.testing.assert_close(token_logprobs(replayed, ids), token_logprobs(logits, ids), atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_replay_forces_recorded_experts_after_perturbation(family, ids):
    model = build(family)
    rr = RoutingReplay.attach(model)
    routes, _ = record(rr, model, ids)
    perturb_routers(model)
    natural, _ = record(rr, model, ids)
    assert (natural.sort(-1).values != routes.sort(-1).values).any(), "perturbation should change natural routing"
    with torch.no_grad(), rr.replay(routes), experts_inputs(model) as seen:
        model(ids)
    assert len(seen) == rr.num_layers
    for layer, (indices, _) in enumerate(seen):
        torch.testing.assert_close(indices, routes[:, layer].long(), atol=0, rtol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_router_gets_gradient_under_replay(family, ids):
    model = build(family).train()
    rr = RoutingReplay.attach(model)
    routes, _ = record(rr, model, ids)
    perturb_routers(model, 0.1)
    with rr.replay(routes):
        token_logprobs(model(ids).logits, ids).sum().backward()
    for router in routers(model):
        assert router.weight.grad is not None and router.weight.grad.abs().sum() > 0
        assert torch.isfinite(router.weight.grad).all()


def manual_gate(family: str, router: nn.Module, hidden: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """Reference gate weights written from the papers' definitions, independently of the library."""
    logits = hidden.reshape(-1, hidden.shape[-1]).float() @ router.weight.float().T  # (tokens, E)
    if family == "deepseek_v3":
        picked = logits.sigmoid().gather(1, indices)  # (tokens, k)
        return picked / (picked.sum(-1, keepdim=True) + 1e-20) * router.routed_scaling_factor
    picked = logits.softmax(-1).gather(1, indices)  # (tokens, k)
    renorm = family == "mixtral" or router.norm_topk_prob
    return picked / picked.sum(-1, keepdim=True) if renorm else picked


@pytest.mark.parametrize(
    ("family", "overrides"),
    [(f, {}) for f in FAMILIES] + [("qwen3_moe", {"norm_topk_prob": False}), ("qwen2_moe", {"norm_topk_prob": True})],
)
def test_gate_weights_are_live_scores_at_replayed_indices(family, overrides, ids):
    model = build(family, **overrides)
    rr = RoutingReplay.attach(model)
    routes, _ = record(rr, model, ids)
    perturb_routers(model)
    hidden: list[torch.Tensor] = []
    hooks = [r.register_forward_pre_hook(lambda _m, args: hidden.append(args[0])) for r in routers(model)]
    with torch.no_grad(), rr.replay(routes), experts_inputs(model) as seen:
        model(ids)
    for hook in hooks:
        hook.remove()
    for layer, router in enumerate(routers(model)):
        indices, weights = seen[layer]
        expected = manual_gate(family, router, hidden[layer], routes[:, layer].long())
        torch.testing.assert_close(weights, expected, atol=1e-6, rtol=1e-5)
        sums = weights.sum(-1)
        if family != "deepseek_v3" and not (family == "mixtral" or router.norm_topk_prob):
            assert (sums < 1 - 1e-3).any(), "without norm_topk_prob the gathered probabilities are not renormalised"
        elif family != "deepseek_v3":
            torch.testing.assert_close(sums, torch.ones_like(sums))


def _padded(seqs: list[torch.Tensor], left: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros(len(seqs), width, dtype=torch.long)
    for row, seq in enumerate(seqs):
        span = slice(width - len(seq), width) if left else slice(0, len(seq))
        ids[row, span], mask[row, span] = seq, 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    return ids, mask, position_ids


@pytest.mark.parametrize("family", ["qwen3_moe", "qwen2_moe"])
def test_padded_and_packed_routes_align(family):
    model = build(family)
    rr = RoutingReplay.attach(model)
    gen = torch.Generator().manual_seed(3)
    seqs = [torch.randint(1, VOCAB, (n,), generator=gen) for n in (5, 3, 7)]
    packed_ids = torch.cat(seqs).unsqueeze(0)  # (1, nnz)
    packed_pos = torch.cat([torch.arange(len(s)) for s in seqs]).unsqueeze(0)
    # packed (1, nnz): transformers builds a block-causal mask from the position_ids resets (needs no KV cache)
    packed, packed_logits = record(rr, model, packed_ids, position_ids=packed_pos, use_cache=False)  # (nnz, L, k)
    assert packed.shape[0] == sum(len(s) for s in seqs)
    for left in (False, True):
        ids, mask, pos = _padded(seqs, left)
        padded, _ = record(rr, model, ids, attention_mask=mask, position_ids=pos)  # (B*S, L, k)
        unpadded = routes_from_padded(padded.view(*ids.shape, *padded.shape[1:]), mask)
        assert torch.equal(unpadded.sort(-1).values, packed.sort(-1).values)
        repadded = routes_to_padded(packed, mask)  # (B, S, L, k), padding = expert 0
        assert torch.equal(repadded[mask.bool()], packed) and not repadded[~mask.bool()].any()
        # replay the packed run's routes into the padded batch: the experts see them at the valid tokens
        with torch.no_grad(), rr.replay(repadded), experts_inputs(model) as seen:
            logits = model(ids, attention_mask=mask, position_ids=pos).logits
        for layer, (indices, _) in enumerate(seen):
            assert torch.equal(indices.view(*ids.shape, -1)[mask.bool()], packed[:, layer].long())
        valid = token_logprobs(logits, ids)[mask.bool()]
        torch.testing.assert_close(valid, token_logprobs(packed_logits, packed_ids)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("family", ["qwen3_moe", "qwen2_moe", "deepseek_v3"])
def test_activation_checkpointing_record_and_replay(family, ids):
    reference = build(family).train()
    model = build(family).train()
    model.gradient_checkpointing_enable()
    rr, rr_ref = RoutingReplay.attach(model), RoutingReplay.attach(reference)
    calls: list[int] = []
    hooks = [r.register_forward_hook(lambda m, _a, _o: calls.append(m.routing_replay_layer)) for r in routers(model)]
    # record through forward + backward: the recompute re-runs every router but must not record twice
    with rr.record():
        token_logprobs(model(ids).logits, ids).sum().backward()
    assert sorted(calls) == sorted(rr.layer_indices * 2), "each router should run twice (forward + recompute)"
    routes = rr.routes()
    assert routes.shape == (B * S, rr.num_layers, 2)
    assert torch.equal(routes, record(rr_ref, reference, ids)[0])
    model.zero_grad(set_to_none=True)
    perturb_routers(model, 1.0)
    with torch.no_grad():
        for router, ref_router in zip(routers(model), routers(reference), strict=True):
            ref_router.weight.copy_(router.weight)
    # replay: the recompute must serve the same recorded indices; backward even runs after leaving replay()
    with rr_ref.replay(routes):
        token_logprobs(reference(ids).logits, ids).sum().backward()
    with rr.replay(routes), experts_inputs(model) as seen:
        loss = token_logprobs(model(ids).logits, ids).sum()
    with experts_inputs(model) as seen_recompute:
        loss.backward()
    assert len(seen) == len(seen_recompute) == rr.num_layers
    for layer in range(rr.num_layers):  # backward recomputes the layers last to first
        assert torch.equal(seen[layer][0], routes[:, layer].long())
        assert torch.equal(seen_recompute[-1 - layer][0], routes[:, layer].long())
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5)
    for hook in hooks:
        hook.remove()


def test_bad_models_raise():
    torch.manual_seed(0)
    dense = tf.Qwen3ForCausalLM(
        tf.Qwen3Config(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=16,
            intermediate_size=32,
        )
    )
    with pytest.raises(ValueError, match="model has no MoE routers; routing replay needs a MoE model"):
        RoutingReplay.attach(dense)
    all_dense = build("qwen3_moe", mlp_only_layers=[0, 1])
    with pytest.raises(ValueError, match="no MoE routers"):
        RoutingReplay.attach(all_dense)
    unsupported = tf.AutoModelForCausalLM.from_config(
        tf.GraniteMoeConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            intermediate_size=16,
            num_local_experts=4,
            num_experts_per_tok=2,
        )
    )
    with pytest.raises(ValueError, match="does not support MoE model_type 'granitemoe'.*qwen3_moe") as err:
        RoutingReplay.attach(unsupported)
    assert all(t in str(err.value) for t in SUPPORTED_MODEL_TYPES)


def test_bad_routes_raise(ids):
    model = build("qwen3_moe")
    rr = RoutingReplay.attach(model)
    routes, _ = record(rr, model, ids)  # (12, 2, 2)
    with pytest.raises(ValueError, match="routes have 3 layers but the model has 2 MoE layers"):
        rr.set_replay(torch.zeros(B * S, 3, 2, dtype=torch.uint8))
    with pytest.raises(ValueError, match="k=3 .*top_k=2"):
        rr.set_replay(torch.zeros(B * S, 2, 3, dtype=torch.uint8))
    bad = routes.clone()
    bad[4, 1, 0] = 8
    with pytest.raises(ValueError, match=r"expert id 8 out of range: the model has 8 experts \(ids 0..7\)"):
        rr.set_replay(bad)
    with pytest.raises(ValueError, match="expert id -1 out of range"):
        rr.set_replay(torch.full((B * S, 2, 2), -1, dtype=torch.int16))
    with pytest.raises(ValueError, match="integer expert ids"):
        rr.set_replay(routes.float())
    rr.set_replay(torch.cat([routes, routes[:1]]))
    with pytest.raises(ValueError, match=f"router saw {B * S} tokens but the replay routes have {B * S + 1} tokens"):
        model(ids)
    rr.clear()
    with pytest.raises(ValueError, match="mode must be one of"):
        rr.mode = "bogus"
    with pytest.raises(ValueError, match="needs routes"):
        rr.mode = "replay"
    with pytest.raises(ValueError, match="already attached"):
        RoutingReplay.attach(model)
    rr.set_replay(routes.view(B, S, 2, 2))  # (B, S, L, k) is accepted and flattened
    rr.detach()
    assert all("forward" not in r.__dict__ and not hasattr(r, "routing_replay_layer") for r in routers(model))
    RoutingReplay.attach(model).detach()  # attachable again


def test_compact_dtype_many_experts(ids):
    model = build("qwen3_moe", num_experts=300, hidden_size=32, head_dim=16, moe_intermediate_size=8)
    rr = RoutingReplay.attach(model)
    routes, logits = record(rr, model, ids)
    assert routes.dtype == torch.int16 and int(routes.max()) < 300 and rr.bytes_per_token == 2 * 2 * 2
    with torch.no_grad(), rr.replay(routes):
        torch.testing.assert_close(model(ids).logits, logits, atol=1e-6, rtol=0)


def test_attach_to_bare_block():
    torch.manual_seed(0)
    block = Qwen3MoeSparseMoeBlock(config("qwen3_moe"))
    nn.init.normal_(block.gate.weight, std=0.02)
    nn.init.normal_(block.experts.gate_up_proj, std=0.02)
    nn.init.normal_(block.experts.down_proj, std=0.02)
    rr = RoutingReplay.attach(block)
    assert rr.layer_indices == [0] and rr.family.name == "qwen3_moe"
    x = torch.randn(2, 5, 64)
    with torch.no_grad(), rr.record():
        y = block(x)
    routes = rr.routes()
    assert routes.shape == (10, 1, 2)
    with torch.no_grad(), rr.replay(routes):
        torch.testing.assert_close(block(x), y, atol=1e-6, rtol=0)


@pytest.mark.parametrize("family", ["qwen3_moe", "mixtral"])
def test_native_and_used_routes_and_invalid_rows(family, ids):
    """Replay exposes what each router used and (track_native) would have picked; zero rows keep native routing."""
    model = build(family)
    rr = RoutingReplay.attach(model)
    routes, _ = record(rr, model, ids)
    torch.testing.assert_close(rr.native_routes(), routes, atol=0, rtol=0)
    torch.testing.assert_close(rr.used_routes(), routes, atol=0, rtol=0)
    perturb_routers(model)
    natural, _ = record(rr, model, ids)
    holes = routes.clone()
    holes[-1] = 0  # the last token: never routed by the inference engine
    rr.track_native = True
    with torch.no_grad(), rr.replay(holes), experts_inputs(model) as seen:
        model(ids)
    native = rr.native_routes()
    # Layer 0 sees the same input as a natural forward; deeper layers see the replayed layers' outputs.
    torch.testing.assert_close(native[:, 0], natural[:, 0], atol=0, rtol=0)
    expected = torch.cat([routes[:-1], native[-1:]])  # replayed rows, native routing for the invalid one
    torch.testing.assert_close(rr.used_routes(), expected, atol=0, rtol=0)
    for layer, (indices, _) in enumerate(seen):
        torch.testing.assert_close(indices, expected[:, layer].long(), atol=0, rtol=0)


def test_unrouted_rows_found_once_per_layer_at_set_time(ids):
    """Only a layer whose replay routes hold an unrouted row runs its router natively (without track_native)."""
    model = build("qwen3_moe")
    rr = RoutingReplay.attach(model)
    routes, logits = record(rr, model, ids)
    holes = routes.clone()
    holes[-1, 1] = 0  # the last token is unrouted in layer 1 only
    with torch.no_grad(), rr.replay(holes):
        model(ids)
        native = rr._native  # per layer: what the router computed by itself in this forward
        assert native[0] is None and native[1] is not None  # layer 0 never ran its router
        assert [rows is not None for rows in rr._replay_invalid] == [False, True]
        assert rr._replay_invalid[1].tolist() == [False] * (routes.shape[0] - 1) + [True]
    with torch.no_grad(), rr.replay(routes):  # no unrouted row: the replayed forward is the recorded one
        torch.testing.assert_close(model(ids).logits, logits, atol=1e-6, rtol=0)
        assert rr._native == [None, None]


@pytest.mark.parametrize("family", FAMILIES)
def test_replayed_router_forward_never_reads_the_device(family, ids):
    """No router forward in replay mode reads a tensor value on the host (a GPU sync): unrouted rows are found once,
    in set_replay; bad routes still fail there, and a wrong token count in the forward, with the same messages."""
    from tests.benchmarks.common import OpCounter

    model = build(family)
    rr = RoutingReplay.attach(model)
    routes, _ = record(rr, model, ids)
    holes = routes.clone()
    holes[-1] = 0  # unrouted in every layer: those routers also run natively
    hidden = torch.randn(B * S, model.config.hidden_size)  # (tokens, H) what a router sees
    with OpCounter() as probe:
        bool(torch.tensor([True]).any())  # the check every router forward used to make
    assert probe.syncs == 1
    for replayed, track_native in ((routes, False), (holes, False), (holes, True)):
        rr.track_native = track_native
        with torch.no_grad(), rr.replay(replayed):
            with OpCounter() as counter:
                for router in routers(model):
                    router(hidden)
            assert counter.syncs == 0 and counter.total > 0, (replayed is holes, track_native)
            with pytest.raises(ValueError, match=f"router saw {B * S + 1} tokens but the replay routes have {B * S}"):
                routers(model)[0](torch.randn(B * S + 1, model.config.hidden_size))
    with pytest.raises(ValueError, match=r"expert id 8 out of range: the model has 8 experts \(ids 0..7\)"):
        rr.set_replay(torch.full_like(routes, 8))


def test_route_set_mismatch_and_valid_rows():
    from stable_verl.core.routing import route_set_mismatch, valid_route_rows

    a = torch.tensor([[[0, 1], [2, 3]], [[4, 5], [6, 7]], [[0, 0], [0, 0]]], dtype=torch.uint8)  # (3, L=2, k=2)
    b = torch.tensor([[[1, 0], [2, 4]], [[4, 5], [6, 7]], [[0, 0], [1, 2]]], dtype=torch.int16)
    assert route_set_mismatch(a, b).tolist() == [[False, True], [False, False], [False, True]]  # order ignored
    assert valid_route_rows(a).tolist() == [True, True, False]
    assert valid_route_rows(a[:, :, :1]).tolist() == [True, True, True]  # k == 1: every row is a top-1
    with pytest.raises(ValueError, match="differ in shape"):
        route_set_mismatch(a, b[:2])
