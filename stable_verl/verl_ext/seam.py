"""The verl / vLLM seam: every upstream symbol stable-verl overrides, patches at run time, writes into or mirrors.

Files of verl and vLLM are never edited; but a subclass that overrides a private method, a runtime patch and a
write into a registry's private dict all depend on upstream details that a new release can change silently. Each
:class:`Seam` names one upstream symbol, how it is used, why, and the call shape it had in the versions of
:data:`WRITTEN_AGAINST`. :func:`problems` resolves every symbol and compares (``tests/unit/verl_ext/test_seam.py`` fails
naming the symbol when one changed); :func:`markdown_table` is the table in the docs.

Call shapes compare parameter names, kinds and defaults, not annotations (their repr varies across Python versions).
Where we mirror an upstream body line for line (the MoE routers' forward, :mod:`stable_verl.core.routing.families`),
``source`` also pins a hash of that body; where verl assigns an attribute we replace by a property, ``assigns`` is
the statement that must still be in the upstream function.

    python -m stable_verl.verl_ext.seam          # the table (markdown)
    python -m stable_verl.verl_ext.seam --check  # resolve and compare every entry; exit 1 naming what changed
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
import textwrap
from dataclasses import dataclass
from typing import Any, Literal

#: The releases the seam was written and last checked against.
WRITTEN_AGAINST = {"verl": "0.9.1", "vllm": "0.32.0", "transformers": "5.19.0", "torch": "2.11"}

Kind = Literal["override", "patch", "wrap", "registry", "mirror", "call", "attribute"]
_KINDS = {
    "override": "subclass overrides it (verl's registries select the subclass)",
    "wrap": "replaced at run time by a wrapper that calls it",
    "patch": "replaced at run time by our function with the same call shape",
    "registry": "written into (a private registry dict)",
    "mirror": "its body is mirrored line for line",
    "call": "called with this call shape",
    "attribute": "an attribute verl assigns, served by our property",
}

_TRAINER = "verl.trainer.ppo.v1.trainer_base:PPOTrainer"
_WORKER = "verl.workers.engine_workers:ActorRolloutRefWorker"
_ENGINE = "verl.workers.engine.fsdp.transformer_impl:FSDPEngine"
_LM_ENGINE = "verl.workers.engine.fsdp.transformer_impl:FSDPEngineWithLMHead"
_OURS_TRAINER = "stable_verl.verl_ext.trainer"  # StableTrainerSync: one base class per concern, one module each
_OURS_WORKER = "stable_verl.verl_ext.actor_worker:RoutingActorRolloutRefWorker"
_OURS_ENGINE = "stable_verl.verl_ext.routing_engine:RoutingReplayFSDPEngine"
_CPU_RUNNER = "vllm.v1.worker.cpu_model_runner:CPUModelRunner"
_CPU_EXPERTS = "vllm.model_executor.layers.fused_moe.experts.cpu_moe:CPUUnquantizedExperts"


@dataclass(frozen=True)
class Seam:
    """One upstream symbol we depend on beyond its public, registered extension points."""

    upstream: str
    """``module:qualname`` of the upstream symbol."""
    kind: Kind
    ours: str
    """``module:qualname`` of our side."""
    concern: str
    """What it is for (store sync, metrics, routing replay, CPU rollouts, ...)."""
    why: str
    shape: str | None
    """Call shape when written (:func:`call_shape`); None: not a callable (checked to exist)."""
    assigns: str | None = None
    """A statement that must be in the upstream function (an attribute verl assigns that we serve)."""
    source: str | None = None
    """sha256[:16] of the upstream function's dedented source, for a body we mirror line for line."""


def _t(piece: str, name: str) -> str:
    """Our side in the trainer package: ``piece`` is ``module:Class`` of one of StableTrainerSync's bases."""
    return f"{_OURS_TRAINER}.{piece}.{name}"


SEAMS: tuple[Seam, ...] = (
    # --- the trainer: StableTrainerSync (registered with verl's register_trainer as ``stable_sync``)
    Seam(f"{_TRAINER}.__init__", "attribute", _t("sync_paths:SyncPaths", "trainer_mode"), "trainer mode",
         "verl picks its sync code paths by trainer_mode == 'sync'; registered as stable_sync we report 'sync'",
         "self, config", assigns="self.trainer_mode = self.config.trainer.v1.trainer_mode"),
    Seam(f"{_TRAINER}._build_replay_buffer", "override", _t("sync_paths:SyncPaths", "_build_replay_buffer"), "speed",
         "poll interval 0.2 s instead of 2 s (verl's quantised every CPU step's generation time)", "self"),
    Seam(f"{_TRAINER}.__init__", "override", _t("metrics:StepDiagnostics", "__init__"), "metrics",
         "one collapse detector per trainer", "self, config"),
    Seam(f"{_TRAINER}.step", "override", _t("metrics:StepDiagnostics", "step"), "metrics",
         "per-token entropy and the collapse warning on every step, before verl saves the step's checkpoint",
         "self, metrics, timing_raw"),
    Seam(f"{_TRAINER}._compute_metrics", "override", _t("metrics:StepDiagnostics", "_compute_metrics"), "metrics",
         "the reward function's extra keys (reward/acc, reward/format) on every step",
         "self, batch, metrics, timing_raw, global_steps, epoch"),
    Seam(f"{_TRAINER}._save_checkpoint", "override", _t("metrics:StepDiagnostics", "_save_checkpoint"), "metrics",
         "the collapse warning's state written into the checkpoint's folder before verl's files", "self"),
    Seam(f"{_TRAINER}._load_checkpoint", "override", _t("metrics:StepDiagnostics", "_load_checkpoint"), "metrics",
         "the collapse warning's state loaded from the checkpoint verl resumed from", "self"),
    Seam(f"{_TRAINER}.__init__", "override", _t("store:StoreCheckpoints", "__init__"), "store sync",
         "point verl's checkpoint folder and file logger at node-local paths when the run syncs to a store",
         "self, config"),
    Seam(f"{_TRAINER}.fit", "attribute", _t("store:StoreCheckpoints", "logger"), "store sync",
         "verl's fit() makes its Tracking logger; ours also writes each step's row to the run's store",
         "self, agent_loop_manager", assigns="self.logger = Tracking("),
    Seam(f"{_TRAINER}._save_checkpoint", "override", _t("store:StoreCheckpoints", "_save_checkpoint"), "store sync",
         "upload each checkpoint to the run's store right after verl saves it", "self"),
    Seam(f"{_TRAINER}._load_checkpoint", "override", _t("store:StoreCheckpoints", "_load_checkpoint"), "store sync",
         "restore the store's latest complete checkpoint onto the nodes before verl loads it", "self"),
    Seam(f"{_TRAINER}._compute_advantage", "override", _t("cispo:CispoGroupTokens", "_compute_advantage"), "CISPO",
         "write each response's group token count into the batch for CISPO's group normalisation",
         "self, batch, metrics"),
    Seam(f"{_TRAINER}._compute_old_log_prob", "override", _t("routing:RouteMetrics", "_compute_old_log_prob"),
         "routing replay", "routing/* metrics from the routes the old-log-prob pass wrote into the batch",
         "self, batch, metrics"),
    Seam(f"{_TRAINER}._init_resource_pool_mgr", "override", _t("worker:ActorWorker", "_init_resource_pool_mgr"),
         "actor worker", "map the actor roles to our worker (routing replay engine, store checkpoints, CISPO's loss)",
         "self"),
    # --- the actor worker and the FSDP engine
    Seam(f"{_WORKER}.__init__", "override", f"{_OURS_WORKER}.__init__", "routing replay",
         "turn verl's enable_routing_replay on for strategy=fsdp* (verl sets it for Megatron / VeOmni only)",
         "self, config, role, distillation_config=None, **kwargs"),
    Seam(f"{_WORKER}.init_model", "override", f"{_OURS_WORKER}.init_model", "CISPO",
         "wrap verl's ppo_loss so that CISPO sees its group token counts", "self"),
    Seam(f"{_WORKER}.save_checkpoint", "override", f"{_OURS_WORKER}.save_checkpoint", "store sync",
         "each rank uploads its own shards from its node", "self, local_path, hdfs_path=None, global_step=0, "
         "max_ckpt_to_keep=None"),
    Seam(f"{_WORKER}.load_checkpoint", "override", f"{_OURS_WORKER}.load_checkpoint", "store sync",
         "each rank restores its own shards onto its node", "self, local_path, hdfs_path=None, "
         "del_local_after_load=False"),
    Seam(f"{_ENGINE}.initialize", "override", f"{_OURS_ENGINE}.initialize", "routing replay",
         "install RoutingReplay on the model's routers", "self"),
    Seam(f"{_ENGINE}.forward_backward_batch", "override", f"{_OURS_ENGINE}.forward_backward_batch",
         "routing replay", "arm record / replay for the batch's micro-batches", "self, data, loss_function, "
         "forward_only=False"),
    Seam(f"{_LM_ENGINE}.prepare_model_inputs", "override", f"{_OURS_ENGINE}.prepare_model_inputs",
         "routing replay", "hand each micro-batch's routes to the routers, in the model's token order",
         "self, micro_batch"),
    Seam(f"{_LM_ENGINE}.prepare_model_outputs", "override", f"{_OURS_ENGINE}.prepare_model_outputs",
         "routing replay", "return the recorded routes with the outputs (R2's old-policy routes)",
         "self, output, output_args, micro_batch, logits_processor_func"),
    Seam(f"{_LM_ENGINE}.forward_step", "override", f"{_OURS_ENGINE}.forward_step", "routing replay",
         "audit which experts actually ran (replay reaching the experts)", "self, micro_batch, loss_function, "
         "forward_only"),
    Seam("verl.workers.engine:EngineRegistry._engines", "registry",
         "stable_verl.verl_ext.routing_engine:register", "routing replay",
         "put RoutingReplayFSDPEngine where the registry has FSDPEngineWithLMHead (fsdp, fsdp2)", None),
    # --- verl functions we call with a fixed shape
    Seam("verl.trainer.ppo.core_algos:agg_loss", "call", "stable_verl.verl_ext.minirl_loss:minirl_policy_loss",
         "MiniRL",
         "verl's token aggregation (seq-mean-token-sum: no length normalisation)",
         "loss_mat, loss_mask, loss_agg_mode, dp_size=1, batch_num_tokens=None, global_batch_size=None, "
         "loss_scale_factor=None"),
    Seam("verl.workers.utils.padding:response_to_nested", "call",
         "stable_verl.verl_ext.cispo_loss:group_tokens_field", "CISPO",
         "responses as nested tensors for the group counts", "tensor, response_mask"),
    Seam("verl.utils.dataset.multiturn_sft_dataset:MultiTurnSFTDataset.__getitem__", "override",
         "stable_verl.verl_ext.sft_dataset:CachedMultiTurnSFTDataset.__getitem__", "speed",
         "items are a pure function of the index: cached after the first epoch", "self, item"),
    # --- vLLM on CPU
    Seam("vllm.model_executor.layers.utils:dispatch_cpu_unquantized_gemm", "patch",
         "stable_verl.verl_ext.cpu.vllm_weights:keep_plain_linear", "CPU rollouts",
         "keep linear weights in place so verl's weight sync reaches the kernels", "layer, remove_weight"),
    Seam(f"{_CPU_EXPERTS}.process_weights_after_loading", "patch",
         "stable_verl.verl_ext.cpu.vllm_weights:_experts_keep_layout", "CPU rollouts",
         "keep the experts' weight layout so synced weights are used as they are", "self, layer"),
    Seam(f"{_CPU_EXPERTS}.apply", "patch", "stable_verl.verl_ext.cpu.vllm_weights:_experts_apply", "CPU rollouts",
         "experts computed from the live weights", "self, output, hidden_states, w1, w2, topk_weights, topk_ids, "
         "activation, global_num_experts, expert_map, a1q_scale, a2_scale, workspace13, workspace2, "
         "expert_tokens_meta, apply_router_weight_on_input"),
    Seam("vllm.model_executor.model_loader.utils:process_weights_after_loading", "wrap",
         "stable_verl.verl_ext.rollout_precision:register", "rollout precision",
         "round the rollout weights (bf16/fp8/int4 emulation) before vLLM repacks them",
         "model, model_config, target_device"),
    Seam(f"{_CPU_RUNNER}.load_model", "wrap", "stable_verl.verl_ext.cpu.vllm_routes:_wrap_load_model", "R3 on CPU",
         "hook the routers to capture vLLM's expert choices", "self, load_dummy_weights=False"),
    Seam(f"{_CPU_RUNNER}.execute_model", "wrap", "stable_verl.verl_ext.cpu.vllm_routes:_wrap_execute_model",
         "R3 on CPU", "collect each step's routes", "self, scheduler_output, intermediate_tensors=None"),
    Seam(f"{_CPU_RUNNER}.sample_tokens", "wrap", "stable_verl.verl_ext.cpu.vllm_routes:_wrap_sample_tokens",
         "R3 on CPU", "return the routes with the sampled tokens", "self, grammar_output"),
    Seam("vllm.config:VllmConfig._verify_aux_output_compatibility", "wrap",
         "stable_verl.verl_ext.cpu.vllm_routes:_wrap_verify", "R3 on CPU",
         "allow route return on the CPU runner (prefix caching off)", "self"),
    Seam("torch.distributed:init_process_group", "wrap", "stable_verl.verl_ext.cpu.platform:_dedupe_backend",
         "CPU training", "one gloo backend when verl asks for 'cpu:gloo,cpu:gloo'", "backend=None, "
         "init_method=None, timeout=None, world_size=-1, rank=-1, store=None, group_name='', pg_options=None, "
         "device_id=None, _ranks=None"),
    # --- transformers: the routers whose forward routing replay mirrors minus the top-k
    *(
        Seam(f"transformers.models.{mod}:{cls}.forward", "mirror", f"stable_verl.core.routing.families:{gate}",
             "routing replay", "gate weights recomputed live at the replayed experts, as the native forward does",
             "self, hidden_states", source=sha)
        for mod, cls, gate, sha in (
            ("qwen3_moe.modeling_qwen3_moe", "Qwen3MoeTopKRouter", "_softmax_gate", "02cfb07d7fb817bb"),
            ("qwen2_moe.modeling_qwen2_moe", "Qwen2MoeTopKRouter", "_softmax_gate", "02cfb07d7fb817bb"),
            ("olmoe.modeling_olmoe", "OlmoeTopKRouter", "_softmax_gate", "02cfb07d7fb817bb"),
            ("mixtral.modeling_mixtral", "MixtralTopKRouter", "_mixtral_gate", "214e75c14db855b8"),
            ("deepseek_v3.modeling_deepseek_v3", "DeepseekV3TopkRouter", "_deepseek_v3_gate", "c826a8f75cfa2d3e"),
        )
    ),
)  # fmt: skip


def resolve(path: str) -> Any:
    """The object at ``module:qualname``; class members are read statically (no descriptor binding)."""
    module, _, qualname = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    if isinstance(obj, staticmethod | classmethod):
        obj = obj.__func__
    return inspect.unwrap(obj) if callable(obj) else obj


def call_shape(fn: Any) -> str:
    """Parameter names, kinds and defaults of ``fn``: ``"self, x, *args, y=1, **kwargs"`` (annotations left out)."""
    parts = []
    for p in inspect.signature(fn).parameters.values():
        prefix = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
        default = "" if p.default is p.empty else f"={p.default!r}"
        parts.append(f"{prefix}{p.name}{default}")
    return ", ".join(parts)


def source_hash(fn: Any) -> str:
    return hashlib.sha256(textwrap.dedent(inspect.getsource(fn)).encode()).hexdigest()[:16]


def problem(seam: Seam) -> str | None:
    """What changed upstream for ``seam`` (one line naming the symbol), or None."""
    try:
        obj = resolve(seam.upstream)
    except (ImportError, AttributeError) as e:
        return f"{seam.upstream}: gone ({type(e).__name__}: {e}); needed by {seam.ours}"
    if getattr(obj, "__module__", "").startswith("stable_verl."):
        return f"{seam.upstream}: already replaced by {obj.__module__} in this process; check in a fresh one"
    if seam.shape is not None:
        shape = call_shape(obj)
        if shape != seam.shape:
            return f"{seam.upstream}: call shape is ({shape}), {seam.ours} was written for ({seam.shape})"
    if seam.assigns is not None and seam.assigns not in inspect.getsource(obj):
        return f"{seam.upstream}: no longer has `{seam.assigns}`, which {seam.ours} relies on"
    if seam.source is not None and source_hash(obj) != seam.source:
        return f"{seam.upstream}: its body changed (source {source_hash(obj)}); re-check the mirror in {seam.ours}"
    return None


def problems(seams: tuple[Seam, ...] = SEAMS) -> list[str]:
    return [p for p in map(problem, seams) if p is not None]


def markdown_table(seams: tuple[Seam, ...] = SEAMS) -> str:
    """The seam as a markdown table, one row per entry, with the versions it was written against."""
    versions = ", ".join(f"{k} {v}" for k, v in WRITTEN_AGAINST.items())
    lines = [
        f"Written against {versions}; `tests/unit/verl_ext/test_seam.py` fails, naming the symbol, "
        "when one of these changes.",
        "",
        "| upstream symbol | how | ours | concern | why |",
        "|---|---|---|---|---|",
    ]
    for s in seams:
        lines.append(f"| `{s.upstream}` | {_KINDS[s.kind]} | `{s.ours}` | {s.concern} | {s.why} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--check"]:
        found = problems()
        print("\n".join(found) or f"all {len(SEAMS)} seam entries match")
        return 1 if found else 0
    print(markdown_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
