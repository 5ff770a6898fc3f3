"""Keep vLLM-CPU's weights where verl's weight sync writes them (registered by ``verl_ext.vllm_cpu_plugin``).

verl pushes the actor's weights into vLLM after every update (``model.load_weights`` followed by
``process_weights_after_loading``). vLLM-CPU's post-load hooks assume weights are loaded once:

* **Linear layers** (``dispatch_cpu_unquantized_gemm``) prepack the weight for oneDNN / sgl kernels and
  replace the ``Parameter`` (or, for the lm_head, keep it but compute with a packed copy). The reload
  then fails (``'Parameter' object has no attribute 'weight_loader'``, after which verl hangs) or the
  lm_head silently keeps its old weights.
* **Unquantized MoE experts** (``CPUUnquantizedExperts``) prepack ``w13``/``w2`` in place. A reload
  writes HF-layout weights into the packed buffers and the model computes garbage: measured vLLM-vs-HF
  token-probability gap 0.48 after reloading *identical* weights (1.8e-7 before).

This plugin keeps both on their live, HF-layout parameters: linear layers compute with
``torch.nn.functional.linear`` and MoE experts with the reference SwiGLU expert math below. That costs
kernel speed, which does not matter for the tiny CPU models, and makes any number of in-place reloads
exact. vLLM imports the gemm dispatcher lazily and resolves methods on the class at call time, so the
replacements take effect for models loaded after ``register()``. Nothing happens off-CPU.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def keep_plain_linear(layer: torch.nn.Module, remove_weight: bool) -> None:
    """Replacement for ``dispatch_cpu_unquantized_gemm``: compute with the live weight."""
    del remove_weight  # never drop the parameter: verl reloads it in place after each update
    layer.cpu_linear = F.linear


def moe_reference(
    hidden_states: torch.Tensor,  # (T, H)
    w13: torch.Tensor,  # (E, 2I, H): [gate; up] per expert, vLLM's merged layout
    w2: torch.Tensor,  # (E, H, I)
    topk_weights: torch.Tensor,  # (T, k)
    topk_ids: torch.Tensor,  # (T, k)
    activation: str = "silu",
    apply_router_weight_on_input: bool = False,
    w13_bias: torch.Tensor | None = None,  # (E, 2I)
    w2_bias: torch.Tensor | None = None,  # (E, H)
) -> torch.Tensor:
    """out[t] = sum_j w[t, j] * W2[e] (act(G[e] x) * U[e] x), e = topk_ids[t, j]; returns (T, H)."""
    act = {"silu": F.silu, "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh")}.get(activation)
    if act is None:
        raise NotImplementedError(f"stable-verl's CPU MoE path supports silu/gelu experts, not {activation!r}")
    out = torch.zeros_like(hidden_states)
    weights = torch.ones_like(topk_weights) if apply_router_weight_on_input else topk_weights
    for expert in torch.unique(topk_ids).tolist():
        token, slot = torch.nonzero(topk_ids == expert, as_tuple=True)  # (n,), (n,)
        x = hidden_states[token]  # (n, H)
        gate_up = x @ w13[expert].t()  # (n, 2I)
        if w13_bias is not None:
            gate_up = gate_up + w13_bias[expert]
        gate, up = gate_up.chunk(2, dim=-1)  # (n, I) each
        y = (act(gate) * up) @ w2[expert].t()  # (n, H)
        if w2_bias is not None:
            y = y + w2_bias[expert]
        out.index_add_(0, token, y * weights[token, slot].unsqueeze(-1).to(y.dtype))
    return out


def _experts_keep_layout(self, layer: torch.nn.Module) -> None:
    """Replacement for ``CPUUnquantizedExperts.process_weights_after_loading``: no padding, no prepack."""
    self._use_zentorch = False


def _experts_apply(
    self,
    output,
    hidden_states,
    w1,
    w2,
    topk_weights,
    topk_ids,
    activation,
    global_num_experts,
    expert_map,
    a1q_scale,
    a2_scale,
    workspace13,
    workspace2,
    expert_tokens_meta,
    apply_router_weight_on_input,
) -> None:
    """Replacement for ``CPUUnquantizedExperts.apply`` over HF-layout weights (single rank, no EP)."""
    if expert_map is not None:
        raise NotImplementedError("stable-verl's CPU MoE path does not support expert parallelism")
    output.copy_(
        moe_reference(
            hidden_states,
            w1,
            w2,
            topk_weights,
            topk_ids,
            activation.value,
            apply_router_weight_on_input,
            getattr(self, "w1_bias", None),
            getattr(self, "w2_bias", None),
        )
    )


def register() -> None:
    """Patch vLLM-CPU's linear and MoE weight hooks (no-op off CPU); idempotent."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.model_executor.layers import utils
    from vllm.model_executor.layers.fused_moe.experts import cpu_moe

    utils.dispatch_cpu_unquantized_gemm = keep_plain_linear
    cpu_moe.CPUUnquantizedExperts.process_weights_after_loading = _experts_keep_layout
    cpu_moe.CPUUnquantizedExperts.apply = _experts_apply
