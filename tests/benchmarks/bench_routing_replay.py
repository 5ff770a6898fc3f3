"""Routing replay overhead: forward + backward with replayed routes vs native routing, same module, same routes.

* ``routing_replay_overhead_layer``: one Qwen3-30B-A3B-sized sparse-MoE block (hidden 2048, 128 experts, top-8,
  moe_intermediate_size 768) on 256 tokens, built bare from its config (``RoutingReplay.attach`` accepts a bare
  block: the family comes from the router class, the single router is layer 0). Experts run transformers'
  ``grouped_mm`` implementation, its default for these models. The expert weights are frozen: their weight
  gradients are identical work in both arms (~10 s a step on CPU) and would only dilute the ratio, so the backward
  computes the input and router-weight gradients, which is where replay differs (gather + renorm vs top-k).
* ``routing_replay_overhead_tiny``: a whole tiny 2-layer Qwen3-MoE causal LM (hidden 128, 8 experts, top-2),
  batch 8 x 128, all parameters trained: here the per-call Python cost of the patched router forward shows most.
* ``routing_replay_extra_host_syncs_tiny``: host syncs (``common.OpCounter``) of one replayed forward + backward of the
  tiny model, beyond the native one's, with an unrouted row in every layer: 0 since unrouted rows are found once,
  when the routes are set (issue 28; a check in every router forward cost 1.081x on an H200).
* ``route_bytes_per_token_qwen3_30b_a3b``: size of one token's routes in the compact format (48 layers x top-8,
  1 byte per id for 128 experts).

Routes are recorded once (native routing) and set once; the timed replay step only switches the mode. Timed on
one thread (restored afterwards): ~1 s a layer step, ~50 ms a tiny step, ~30 s in all on a 2-core CPU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from stable_verl.core.routing import RoutingReplay, route_bytes_per_token
from tests.benchmarks.common import Figure, OpCounter, block_ratio


def _arms(rr: RoutingReplay, step: Callable[[], None]) -> tuple[Callable[[], None], Callable[[], None]]:
    """The two timed arms: ``step()`` (forward + backward) with native routing, and with the set routes replayed."""

    def off() -> None:
        rr.mode = "off"
        step()

    def replay() -> None:
        rr.mode = "replay"
        step()

    return off, replay


def _layer_ratio(tokens: int = 256, repeats: int = 3) -> tuple[float, tuple[float, float]]:
    config = Qwen3MoeConfig(hidden_size=2048, num_experts=128, num_experts_per_tok=8, moe_intermediate_size=768)
    config._experts_implementation = "grouped_mm"
    torch.manual_seed(0)
    block = Qwen3MoeSparseMoeBlock(config)
    for param in block.parameters():
        torch.nn.init.normal_(param, std=config.initializer_range)
    block.experts.requires_grad_(False)
    x = torch.randn(1, tokens, config.hidden_size, requires_grad=True)  # (B, S, H)
    rr = RoutingReplay.attach(block)
    with torch.no_grad(), rr.record():
        block(x)
    rr.set_replay(rr.routes())  # (tokens, 1, 8) uint8

    def step() -> None:
        block(x).square().mean().backward()
        x.grad = block.gate.weight.grad = None

    off, replay = _arms(rr, step)
    ratio = block_ratio(replay, off, blocks=5, repeats=repeats, warmup=1)
    rr.detach()
    return ratio


def _tiny_model(batch: int, seq: int) -> tuple[Qwen3MoeForCausalLM, torch.Tensor]:
    config = Qwen3MoeConfig(
        vocab_size=1024, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        head_dim=32, num_experts=8, num_experts_per_tok=2, moe_intermediate_size=64, intermediate_size=256,
        norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
    )  # fmt: skip
    torch.manual_seed(0)
    model = Qwen3MoeForCausalLM(config).train()
    return model, torch.randint(0, config.vocab_size, (batch, seq))


def _tiny_ratio(batch: int = 8, seq: int = 128, repeats: int = 10) -> tuple[float, tuple[float, float]]:
    model, ids = _tiny_model(batch, seq)
    rr = RoutingReplay.attach(model)
    with torch.no_grad(), rr.record():
        model(ids, use_cache=False)
    rr.set_replay(rr.routes())  # (batch * seq, 2, 2) uint8

    def step() -> None:
        model(ids, use_cache=False).logits.logsumexp(-1).mean().backward()
        model.zero_grad(set_to_none=True)

    off, replay = _arms(rr, step)
    ratio = block_ratio(replay, off, blocks=5, repeats=repeats, warmup=3)
    rr.detach()
    return ratio


def _tiny_extra_syncs(batch: int = 2, seq: int = 16) -> int:
    """Host syncs of a replayed step (routes with an unrouted last token in every layer) minus a native step's."""
    model, ids = _tiny_model(batch, seq)
    rr = RoutingReplay.attach(model)
    with torch.no_grad(), rr.record():
        model(ids, use_cache=False)
    routes = rr.routes()  # (batch * seq, 2, 2) uint8
    routes[-1] = 0  # the last sampled token: never routed by the inference engine
    rr.set_replay(routes)

    def step() -> None:
        model(ids, use_cache=False).logits.logsumexp(-1).mean().backward()
        model.zero_grad(set_to_none=True)

    syncs = {}
    for name, arm in zip(("off", "replay"), _arms(rr, step), strict=True):
        arm()  # warm: first-call work is not the steady state
        with OpCounter() as counter:
            arm()
        syncs[name] = counter.syncs
    rr.detach()
    return syncs["replay"] - syncs["off"]


def run() -> list[Figure]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a small shared CPU, one thread keeps OpenMP barrier stalls out of the medians
    try:
        layer, tiny, syncs = _layer_ratio(), _tiny_ratio(), _tiny_extra_syncs()
    finally:
        torch.set_num_threads(threads)
    return [
        Figure("routing_replay_overhead_layer", layer[0], "<=", 1.05, layer[1]),
        Figure("routing_replay_overhead_tiny", tiny[0], "<=", 1.05, tiny[1]),
        Figure("routing_replay_extra_host_syncs_tiny", syncs, "<=", 0),
        Figure("route_bytes_per_token_qwen3_30b_a3b", route_bytes_per_token(48, 8, 128), "<=", 384),
    ]
