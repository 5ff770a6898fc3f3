"""GPU checks (issue 14): what routing replay, bf16/fp8 route flips and the MiniRL loss cost at real sizes.

    python tests/gpu/run_checks.py --out gpu.json            # CUDA, Qwen3-30B-A3B shapes (~20 s on an H200)
    python tests/gpu/run_checks.py --toy --out toy.json      # CPU, toy sizes, seconds (tests/unit/test_gpu_checks.py)

Imports only ``stable_verl.core``, torch and transformers: the GPU machine has no verl, vLLM or Ray, so verl's
vanilla PPO loss is copied below. Prints one ``BENCH <name> <value> <op> <target>`` line per figure and writes
every figure, its spread and the peak memory of each arm to ``--out`` (JSON). Exit status: 0, 1 if a figure
misses its target, 2 if a section raised (the other sections still run).

* **replay**: one Qwen3-30B-A3B MoE block (hidden 2048, 128 experts, top-8, moe_intermediate 768) in bf16, experts
  on transformers' ``grouped_mm`` (its default), forward + backward on ``replay_tokens`` tokens: recorded routes
  replayed vs native routing; ``replay_tracked`` also computes the native top-k, as the verl engine replays (for its
  mismatch metrics); ``replay_engine`` also sets the routes before each step, as the engine does per micro-batch
  (``set_replay`` validates them and finds unrouted rows there, never in a router forward). Once with every
  parameter trained (as in RL), once with frozen experts (stricter: the expert weight gradients, the same work in
  every arm, no longer dilute the ratio).
* **flips**: ``flip_layers`` Qwen3-MoE layers at that shape without attention (``h <- h + moe(rmsnorm(h))``, random
  weights, std 0.02) on ``flip_batch x flip_seq`` i.i.d. N(0, 1) token states. Attention is left out on purpose:
  random-weight attention averages random values, so its output is ill-conditioned (bf16 put a 3.5% error on the
  layer-0 router input, on CPU at 512 tokens, instead of ~0.4%); with it, a first H200 run flipped 36% of bf16
  routes (62% at layer 0) against 8% (4%) without. Reference: fp32 weights, transformers' ``eager`` expert loop
  (deterministic algorithms, no TF32). A flip is a (token, layer) whose top-k *set* differs. Arms: bf16 weights,
  per-channel fp8-rounded weights (``core.precision``, which also rounds the router gate; computed in bf16), and fp8
  with the gate kept in bf16 (vLLM builds MoE router gates unquantized), each with two expert kernels: ``eager``
  (HF's reference per-expert loop, bf16 ``index_add_``) and ``grouped`` (transformers' ``grouped_mm``: tokens sorted
  by expert, one grouped GEMM per projection, the top-k sum in fp32). ``grouped`` is our stand-in for vLLM's
  ``fused_moe`` (same sorted-token grouped-GEMM structure); it is NOT vLLM's Triton kernel, and vLLM also differs in
  fused norms, fp32 gate weights and real fp8 GEMMs. R3: the bf16 eager stack replays the
  fp8 grouped routes; the experts it then uses must equal them (0 flips).
* **loss**: MiniRL (``core.minirl``, as the verl plugin calls it: packed statistics with the train-inference KL,
  moved to the host in one copy) vs verl's vanilla PPO loss (copy below, same aggregation, host floats as verl takes
  them) at ``loss_rows x loss_len`` tokens, fp32 and bf16; ``minirl_unpacked`` is the loss as it was before its
  statistics were packed (issue 28: one dot product and one host float per statistic;
  ``tests/benchmarks/minirl_unpacked.py``), timed alongside so one run gives before and after.

Timing: ``blocks`` interleaved blocks (arm order alternating) of ``iters`` calls after ``warmup`` calls, CUDA
synchronised around each block; a ratio is the median over blocks of the per-block ratio, with min and max.
Peak memory (CUDA only; ``null`` on CPU): ``torch.cuda.max_memory_allocated`` over one call of each arm.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS for the fp32 reference
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))  # repo root

import argparse
import copy
import datetime
import json
import math
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import transformers
from torch import nn
from transformers import Qwen3MoeConfig
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeRMSNorm, Qwen3MoeSparseMoeBlock

from stable_verl.core.minirl import MiniRLConfig, minirl_token_loss_packed
from stable_verl.core.precision import round_model_weights
from stable_verl.core.routing import RoutingReplay, route_set_mismatch
from tests.benchmarks.bench_routing_replay import _arms
from tests.benchmarks.common import Figure
from tests.benchmarks.minirl_unpacked import host_floats, minirl_token_loss_unpacked

KERNELS = {"eager": "eager", "grouped": "grouped_mm"}  # our arm name -> transformers experts implementation


@dataclass(frozen=True)
class Sizes:
    """Problem sizes; every field is also a flag (``--flip-layers 4``). Defaults: the real (GPU) sizes."""

    hidden: int = 2048
    """Qwen3-30B-A3B hidden_size."""
    experts: int = 128
    """Qwen3-30B-A3B num_experts."""
    top_k: int = 8
    """Qwen3-30B-A3B num_experts_per_tok."""
    moe_intermediate: int = 768
    """Qwen3-30B-A3B moe_intermediate_size."""
    replay_tokens: int = 8192
    """Tokens per forward + backward in the replay-overhead check (issue: >= 8k)."""
    flip_layers: int = 8
    """MoE layers in the route-flip stack (flips compound with depth; 8 fp32 layers hold 19 GiB of experts)."""
    flip_batch: int = 4
    """Sequences in the route-flip batch."""
    flip_seq: int = 2048
    """Tokens per sequence in the route-flip batch."""
    loss_rows: int = 64
    """Responses in the loss check (issue: 64)."""
    loss_len: int = 8192
    """Tokens per response in the loss check (issue: 8192)."""
    blocks: int = 15
    """Timed blocks per arm."""
    iters: int = 10
    """Calls per timed block."""
    warmup: int = 3
    """Untimed calls per arm first."""

    def __post_init__(self) -> None:
        for f in fields(self):
            if getattr(self, f.name) < 1:
                raise ValueError(f"--{f.name.replace('_', '-')} must be >= 1, got {getattr(self, f.name)}")
        if self.top_k < 2 or self.top_k > self.experts:
            raise ValueError(f"--top-k must be in [2, --experts={self.experts}], got {self.top_k}")


TOY = Sizes(
    hidden=64, experts=8, top_k=2, moe_intermediate=32, replay_tokens=128, flip_layers=2, flip_batch=2, flip_seq=32,
    loss_rows=4, loss_len=64, blocks=3, iters=2, warmup=1,
)  # fmt: skip


# -- plumbing: timing and memory ---------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def time_arms(
    arms: dict[str, Callable[[], None]], base: str, s: Sizes, device: torch.device,
    pairs: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:  # fmt: skip
    """Per-call ms of each arm (median/min/max over blocks), each arm's per-block ratio to ``base``, and for each
    ``(a, b)`` of ``pairs`` the per-block ratio ``ratio_{a}_vs_{b}``."""
    for _ in range(s.warmup):
        for fn in arms.values():
            fn()
    names = list(arms)
    ms: dict[str, list[float]] = {name: [] for name in names}
    for block in range(s.blocks):
        for name in names if block % 2 == 0 else names[::-1]:
            _sync(device)
            start = time.perf_counter()
            for _ in range(s.iters):
                arms[name]()
            _sync(device)
            ms[name].append((time.perf_counter() - start) * 1e3 / s.iters)
    out: dict[str, Any] = {f"{name}_ms": _spread(ms[name]) for name in names}
    for name in names:
        if name != base:
            out[f"ratio_{name}"] = _spread([a / b for a, b in zip(ms[name], ms[base], strict=True)])
    for a, b in pairs:
        out[f"ratio_{a}_vs_{b}"] = _spread([x / y for x, y in zip(ms[a], ms[b], strict=True)])
    return out


def peak_mib(fn: Callable[[], None], device: torch.device) -> float | None:
    """Call ``fn`` once; the peak allocated CUDA memory over it (MiB, resident tensors included), None off CUDA."""
    if device.type != "cuda":
        fn()
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def _config(s: Sizes, layers: int) -> Qwen3MoeConfig:
    return Qwen3MoeConfig(
        hidden_size=s.hidden, num_hidden_layers=layers, num_experts=s.experts, num_experts_per_tok=s.top_k,
        moe_intermediate_size=s.moe_intermediate, norm_topk_prob=True, decoder_sparse_step=1, mlp_only_layers=[],
    )  # fmt: skip


@torch.no_grad()
def _init(module: torch.nn.Module, std: float = 0.02) -> None:
    """Random weights: every matrix (router and experts included) ~ N(0, std); norms keep their ones."""
    for param in module.parameters():
        if param.dim() >= 2:
            param.normal_(0.0, std)


def _set_kernel(model: torch.nn.Module, kernel: str) -> None:
    """Switch every experts module of ``model`` to transformers' ``KERNELS[kernel]`` implementation."""
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None:
            config._experts_implementation = KERNELS[kernel]


# -- (a) routing replay overhead -------------------------------------------------------------------------------------


def check_replay(s: Sizes, device: torch.device, train_experts: bool) -> dict[str, Any]:
    """Forward + backward of one bf16 MoE block: replayed (recorded) routes vs native routing, same module."""
    config = _config(s, layers=1)
    config._experts_implementation = KERNELS["grouped"]
    torch.manual_seed(0)
    with torch.device(device):
        block = Qwen3MoeSparseMoeBlock(config)
    _init(block)
    block.to(torch.bfloat16).experts.requires_grad_(train_experts)
    x = torch.randn(1, s.replay_tokens, s.hidden, device=device, dtype=torch.bfloat16, requires_grad=True)  # (1, N, H)
    rr = RoutingReplay.attach(block)
    with torch.no_grad(), rr.record():
        native_out = block(x)  # (1, N, H)
    rr.set_replay(rr.routes())  # (N, 1, k) uint8
    with torch.no_grad():
        diff = (block(x) - native_out).abs().max().item()  # same routes, same gate weights: bitwise equal

    def step() -> None:
        block(x).float().square().mean().backward()
        x.grad = None
        block.zero_grad(set_to_none=True)

    off, replay = _arms(rr, step)

    def replay_tracked() -> None:  # as the verl engine replays: the native top-k computed alongside, for metrics
        rr.track_native = True
        try:
            replay()
        finally:
            rr.track_native = False

    routes = rr.routes()  # (N, 1, k) the routes every replay arm replays

    def replay_engine() -> None:  # as the engine, per micro-batch: set the routes (validated, unrouted rows found)
        rr.set_replay(routes)
        replay_tracked()

    arms = {"native": off, "replay": replay, "replay_tracked": replay_tracked, "replay_engine": replay_engine}
    try:
        out = time_arms(arms, "native", s, device)
        out["peak_mib"] = {name: peak_mib(fn, device) for name, fn in arms.items()}
        out["replay_vs_native_output_max_abs_diff"] = diff
    finally:
        rr.detach()
    return out


# -- (b) route flips -------------------------------------------------------------------------------------------------


def _flips(a: torch.Tensor, b: torch.Tensor) -> dict[str, Any]:
    """Fraction of (token, layer) pairs whose top-k sets differ between two (tokens, L, k) route tensors."""
    flipped = route_set_mismatch(a, b).float()  # (tokens, L)
    return {"frac": flipped.mean().item(), "per_layer": flipped.mean(0).tolist()}


def check_flips(s: Sizes, device: torch.device) -> dict[str, Any]:
    """Routes of one random Qwen3-MoE stack in fp32 / bf16 / fp8-rounded weights and eager / grouped kernels."""
    det, det_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    precision = torch.get_float32_matmul_precision()
    out: dict[str, Any] = {}
    torch.use_deterministic_algorithms(True, warn_only=True)  # CUDA index_add_ (eager kernel) uses atomics otherwise
    torch.set_float32_matmul_precision("highest")  # no TF32: the reference is true fp32
    try:
        peak = peak_mib(lambda: out.update(_flips_run(s, device)), device)
        return {**out, "peak_mib": peak}
    finally:
        torch.use_deterministic_algorithms(det, warn_only=det_warn)
        torch.set_float32_matmul_precision(precision)


class MoEStack(nn.Module):
    """Qwen3-MoE decoder layers without attention: ``h <- h + moe(rmsnorm(h))`` per layer (pre-norm residual)."""

    def __init__(self, config: Qwen3MoeConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleDict({"norm": Qwen3MoeRMSNorm(config.hidden_size, config.rms_norm_eps),
                           "mlp": Qwen3MoeSparseMoeBlock(config)})
            for _ in range(config.num_hidden_layers)
        )  # fmt: skip

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, S, H) -> (B, S, H)
        for layer in self.layers:
            h = h + layer["mlp"](layer["norm"](h))
        return h


@torch.no_grad()
def _flips_run(s: Sizes, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    with torch.device(device):
        model = MoEStack(_config(s, layers=s.flip_layers)).eval()
    _init(model)
    x = torch.randn(s.flip_batch, s.flip_seq, s.hidden, device=device)  # (B, S, H) fp32 token states

    def routes(m: nn.Module, rr: RoutingReplay, kernel: str) -> torch.Tensor:
        _set_kernel(m, kernel)
        with rr.record():
            m(x.to(next(m.parameters()).dtype))  # a bf16 engine holds its activations in bf16
        return rr.routes()  # (B * S, L, k)

    r: dict[str, torch.Tensor] = {}
    rr = RoutingReplay.attach(model)
    r["fp32_eager"], r["fp32_eager_rerun"] = routes(model, rr, "eager"), routes(model, rr, "eager")
    model.to(torch.bfloat16)  # in place: the fp32 weights are freed
    r["bf16_eager"], r["bf16_grouped"] = routes(model, rr, "eager"), routes(model, rr, "grouped")
    rr.detach()
    for name, bf16_gate in (("fp8", False), ("fp8_bf16_gate", True)):
        fp8 = copy.deepcopy(model)
        round_model_weights(fp8, "fp8")  # per-channel float8_e4m3 values, stored (and computed) in bf16
        if bf16_gate:  # as vLLM's Qwen3-MoE, which leaves the router gate unquantized
            for layer, layer8 in zip(model.layers, fp8.layers, strict=True):
                layer8["mlp"].gate.weight.copy_(layer["mlp"].gate.weight)
        rr8 = RoutingReplay.attach(fp8)
        r[f"{name}_eager"], r[f"{name}_grouped"] = routes(fp8, rr8, "eager"), routes(fp8, rr8, "grouped")
        rr8.detach()
        del fp8

    # R3: the bf16 training stack replays the fp8 "inference" routes and also computes its own (native) choice.
    rr = RoutingReplay.attach(model)
    _set_kernel(model, "eager")
    rr.track_native = True
    with rr.replay(r["fp8_grouped"]):
        model(x.to(torch.bfloat16))
    used, native = rr.used_routes(), rr.native_routes()
    rr.detach()

    pairs = {
        "fp32_rerun": ("fp32_eager", "fp32_eager_rerun"),
        "bf16_eager": ("fp32_eager", "bf16_eager"),
        "bf16_grouped": ("fp32_eager", "bf16_grouped"),
        "fp8_eager": ("fp32_eager", "fp8_eager"),
        "fp8_grouped": ("fp32_eager", "fp8_grouped"),
        "fp8_bf16_gate_eager": ("fp32_eager", "fp8_bf16_gate_eager"),
        "fp8_bf16_gate_grouped": ("fp32_eager", "fp8_bf16_gate_grouped"),
        "bf16_eager_vs_bf16_grouped": ("bf16_eager", "bf16_grouped"),
        "bf16_eager_vs_fp8_grouped": ("bf16_eager", "fp8_grouped"),
        "bf16_eager_vs_fp8_bf16_gate_grouped": ("bf16_eager", "fp8_bf16_gate_grouped"),
    }
    out: dict[str, Any] = {name: _flips(r[a], r[b]) for name, (a, b) in pairs.items()}
    out["r3_used_vs_replayed"] = _flips(used, r["fp8_grouped"])
    out["r3_native_vs_replayed"] = _flips(native, r["fp8_grouped"])
    out["tokens"], out["layers"] = s.flip_batch * s.flip_seq, s.flip_layers
    return out


# -- (c) MiniRL loss vs verl's vanilla PPO loss -----------------------------------------------------------------------


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """verl.utils.torch_functional.masked_mean (verl 0.9.1), copied."""
    return (torch.where(mask.bool(), values, 0.0) * mask).sum() / (mask.sum() + 1e-8)


def _agg_seq_mean_token_sum(loss_mat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """verl 0.9.1 ``agg_loss(..., "seq-mean-token-sum")`` with dp_size 1 and no global batch info, copied."""
    seq_losses = torch.sum(loss_mat * mask, dim=-1)  # (B,) token-sum
    seq_mask = (torch.sum(mask, dim=-1) > 0).float()  # (B,) exclude fully masked sequences
    return (torch.where(seq_mask.bool(), seq_losses, 0.0) * seq_mask).sum() / seq_mask.sum()


def vanilla_ppo_loss(
    old_log_prob: torch.Tensor, log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    is_weights: torch.Tensor, clip_low: float = 0.2, clip_high: float = 0.27, clip_c: float = 3.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:  # fmt: skip
    """verl 0.9.1 ``compute_policy_loss_vanilla`` (dual-clip PPO, rollout IS weights), copied; (B, T) inputs."""
    negative_approx_kl = torch.clamp(log_prob - old_log_prob, min=-20.0, max=20.0)
    ratio = torch.exp(negative_approx_kl)
    ppo_kl = _masked_mean(-negative_approx_kl, mask)
    pg_losses1 = -advantages * ratio
    pg_losses2 = -advantages * torch.clamp(ratio, 1 - clip_low, 1 + clip_high)
    clip_pg_losses1 = torch.maximum(pg_losses1, pg_losses2)
    pg_clipfrac = _masked_mean(torch.gt(pg_losses2, pg_losses1).float(), mask)
    pg_losses3 = -advantages * clip_c
    clip_pg_losses2 = torch.min(pg_losses3, clip_pg_losses1)
    pg_clipfrac_lower = _masked_mean(torch.gt(clip_pg_losses1, pg_losses3) * (advantages < 0).float(), mask)
    pg_losses = torch.where(advantages < 0, clip_pg_losses2, clip_pg_losses1) * is_weights
    metrics = {"pg_clipfrac": pg_clipfrac, "ppo_kl": ppo_kl, "pg_clipfrac_lower": pg_clipfrac_lower}
    return _agg_seq_mean_token_sum(pg_losses, mask), metrics


def minirl_loss(
    old_log_prob: torch.Tensor, log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    is_ratio: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """What ``stable_verl.verl_ext.minirl_loss`` computes (it imports verl): the loss, and its statistics with the
    train-inference KL as host floats, moved in one copy."""
    loss_mat, stats = minirl_token_loss_packed(
        log_prob, old_log_prob, advantages, mask, MiniRLConfig(), is_ratio, train_infer_kl=True
    )
    return _agg_seq_mean_token_sum(loss_mat, mask), stats.floats()


def minirl_loss_unpacked(
    old_log_prob: torch.Tensor, log_prob: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
    is_ratio: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, float]]:  # fmt: skip
    """The plugin before issue 28: the same loss and statistics, each statistic its own dot product and host float."""
    loss_mat, stats = minirl_token_loss_unpacked(log_prob, old_log_prob, advantages, mask, MiniRLConfig(), is_ratio)
    return _agg_seq_mean_token_sum(loss_mat, mask), host_floats(stats)


LossFn = Callable[..., tuple[torch.Tensor, dict[str, Any]]]


def check_loss(s: Sizes, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """Forward + backward + metrics to host floats, as a training step does: MiniRL (and MiniRL unpacked, as before
    issue 28) vs verl vanilla."""
    torch.manual_seed(0)
    shape = (s.loss_rows, s.loss_len)
    old = (-torch.rand(shape, device=device) * 3).to(dtype)  # (B, T)
    new = (old + 0.05 * torch.randn(shape, device=device, dtype=dtype)).requires_grad_()  # (B, T)
    adv = torch.randn(s.loss_rows, 1, device=device, dtype=dtype).expand(shape)  # (B, T)
    mask = torch.rand(shape, device=device) < 0.9  # (B, T)
    is_ratio = (torch.exp(0.1 * torch.randn(shape, device=device)) * mask).to(dtype)  # (B, T) pi_old / mu_old
    tis = is_ratio.clamp(max=5.0)  # verl's token TIS weights for the vanilla loss

    def run(fn: LossFn, weights: torch.Tensor) -> None:
        loss, metrics = fn(old, new, adv, mask, weights)
        loss.backward()
        new.grad = None
        # vanilla's metrics: one host sync each, as verl's .item(); MiniRL's: host floats already
        values = [loss.item(), *(v if isinstance(v, float) else float(v.detach()) for v in metrics.values())]
        if any(math.isnan(v) for v in values):
            raise FloatingPointError(f"{fn.__name__} returned NaN: loss and metrics {values}")

    arms = {
        "vanilla": lambda: run(vanilla_ppo_loss, tis),
        "minirl": lambda: run(minirl_loss, is_ratio),
        "minirl_unpacked": lambda: run(minirl_loss_unpacked, is_ratio),
    }
    out = time_arms(arms, "vanilla", s, device, pairs=(("minirl", "minirl_unpacked"),))
    out["peak_mib"] = {name: peak_mib(fn, device) for name, fn in arms.items()}
    return out


# -- driver ----------------------------------------------------------------------------------------------------------


def _mem_ratio(peak: dict[str, float | None], arm: str, base: str) -> float | None:
    a, b = peak[arm], peak[base]
    return None if a is None or b is None else a / b


REPLAY_FIGURES = {  # section -> figure name
    "replay_trained": "routing_replay_overhead_qwen3_30b_layer_bf16",
    "replay_frozen_experts": "routing_replay_overhead_qwen3_30b_layer_bf16_frozen_experts",
}
ZERO_FLIPS = ("fp32_rerun", "r3_used_vs_replayed")  # must flip nothing


def figures(res: dict[str, Any]) -> list[Figure]:
    """The BENCH lines of whichever sections succeeded. Flip fractions are measurements: their target 1 is only
    the validity bound; the fp32 rerun and the experts used under R3 must flip nothing (target 0)."""
    out: list[Figure] = []
    for key, name in REPLAY_FIGURES.items():
        if "ratio_replay" in res.get(key, {}):
            out.append(Figure(name, res[key]["ratio_replay"]["median"], "<=", 1.03))
            out.append(Figure(f"{name}_tracked", res[key]["ratio_replay_tracked"]["median"], "<=", 1.03))
            out.append(Figure(f"{name}_engine", res[key]["ratio_replay_engine"]["median"], "<=", 1.03))
            diff = res[key]["replay_vs_native_output_max_abs_diff"]
            out.append(Figure(name.replace("overhead", "output_diff"), diff, "<=", 0))
            mem = _mem_ratio(res[key]["peak_mib"], "replay", "native")
            if mem is not None:
                out.append(Figure(name.replace("overhead", "peak_mem_ratio"), mem, "<=", 1.05))
    flips = res.get("flips", {})
    for key in ZERO_FLIPS:
        if key in flips:
            out.append(Figure(f"route_flip_{key}", flips[key]["frac"], "<=", 0))
    for key, value in flips.items():
        if isinstance(value, dict) and key not in ZERO_FLIPS:
            out.append(Figure(f"route_flip_{key}", value["frac"], "<=", 1))
    for dtype in ("fp32", "bf16"):
        loss = res.get(f"loss_{dtype}", {})
        if "ratio_minirl" in loss:
            out.append(Figure(f"minirl_loss_vs_verl_vanilla_{dtype}", loss["ratio_minirl"]["median"], "<=", 1.10))
            before = loss["ratio_minirl_vs_minirl_unpacked"]["median"]  # after / before, same run
            out.append(Figure(f"minirl_loss_vs_unpacked_{dtype}", before, "<=", 1.0))
            mem = _mem_ratio(loss["peak_mib"], "minirl", "vanilla")
            if mem is not None:
                out.append(Figure(f"minirl_loss_vs_verl_vanilla_{dtype}_peak_mem_ratio", mem, "<=", 1.25))
    return out


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, Sizes]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write the figures to")
    parser.add_argument("--toy", action="store_true", help="toy sizes (CPU, seconds) instead of the real ones")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cuda or cpu")
    for f in fields(Sizes):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=int, help=f"override {f.name}")
    args = parser.parse_args(argv)
    overrides = {f.name: getattr(args, f.name) for f in fields(Sizes) if getattr(args, f.name) is not None}
    try:
        sizes = replace(TOY if args.toy else Sizes(), **overrides)
    except ValueError as err:
        parser.error(str(err))
    return args, sizes


def main(argv: list[str] | None = None) -> int:
    args, s = _parse(argv)
    device = torch.device(args.device)
    started = time.perf_counter()
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "replay_trained": lambda: check_replay(s, device, train_experts=True),
        "replay_frozen_experts": lambda: check_replay(s, device, train_experts=False),
        "flips": lambda: check_flips(s, device),
        "loss_fp32": lambda: check_loss(s, device, torch.float32),
        "loss_bf16": lambda: check_loss(s, device, torch.bfloat16),
    }
    res: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]) if argv is None else " ".join(["run_checks.py", *argv]),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sizes": asdict(s),
    }
    errors = 0
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # on a small shared CPU, OpenMP barrier stalls would dominate the toy sizes
    for name, section in sections.items():
        t0 = time.perf_counter()
        try:
            res[name] = section()
        except Exception as err:  # one failed section must not lose the others' figures
            errors += 1
            res[name] = {"error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
            print(f"section {name} failed: {res[name]['error']}", file=sys.stderr, flush=True)
        res[name]["wall_s"] = round(time.perf_counter() - t0, 2)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(f"section {name}: {res[name]['wall_s']} s", file=sys.stderr, flush=True)
    torch.set_num_threads(threads)
    figs = figures(res)
    res["figures"] = [{**asdict(f), "ok": f.ok} for f in figs]
    res["wall_s"] = round(time.perf_counter() - started, 2)
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)
    for fig in figs:
        print(fig.line(), flush=True)
    return 2 if errors else (1 if not all(f.ok for f in figs) else 0)


if __name__ == "__main__":
    sys.exit(main())
