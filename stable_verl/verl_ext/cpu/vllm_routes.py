"""vLLM-CPU returns the experts it routed each token to (``CompletionOutput.routed_experts``), as vLLM does on GPU.

verl's R3 asks vLLM for ``enable_return_routed_experts`` and reads ``outputs[0].routed_experts``. In vLLM 0.32
that path ("AuxOutput connector") is wired only into Model Runner V2, which needs a Triton backend vLLM-CPU does
not have, so ``_verify_aux_output_compatibility`` refuses the flag on CPU.

This module supplies the worker half on CPU and keeps everything else native:

* **capture** is vLLM's own ``RoutedExpertsCapturer``, bound with vLLM's ``bind_routed_experts_capturer`` to the
  routers of the loaded model: every router writes the ``topk_ids`` the experts then consume into a
  ``(max_batched_tokens, layers, k)`` buffer, so the routes are exactly what vLLM's MoE layers used;
* **per-request bookkeeping** (this module): after each forward the buffer's rows are split by request in the
  batch order vLLM laid the tokens out, and appended to that request's pending rows;
* **delivery** is native: the rows ride ``ModelRunnerOutput.aux_output_connector_output`` to vLLM's scheduler
  (``AuxOutputSchedulerConnector.take_output``) and output processor, which concatenate them into
  ``CompletionOutput.routed_experts`` (``[prompt + response - 1, layers, k]``: the last sampled token is never
  run through the model).

A request that starts from a prefix-cache hit has no rows for its cached prefix (vLLM's GPU path keeps routes in
a block store keyed by KV hashes for that); those rows are left zero, which routing replay treats as "no route"
and routes natively. So on CPU, asking for routes turns prefix caching off.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import wraps

import numpy as np

logger = logging.getLogger(__name__)


@dataclass
class _RequestRows:
    prompt_len: int
    emit_start: int = 0  # position of the first row not yet handed to the scheduler
    pending: list[np.ndarray] = field(default_factory=list)

    @property
    def next_position(self) -> int:
        return self.emit_start + sum(len(rows) for rows in self.pending)


class RouteBook:
    """Per-request routes on one CPU model runner: what the scheduler has not consumed yet."""

    def __init__(self, capturer) -> None:
        self.capturer = capturer
        self.requests: dict[str, _RequestRows] = {}
        self._step_outputs: dict | None = None
        self._warned_prefix = False

    def after_forward(self, scheduler_output, req_ids: list[str]) -> None:
        """Split this step's captured rows by request; stage the outputs of requests that sample a token."""
        from vllm.distributed.aux_output_connector.connector import AuxRequestOutput

        for req_id in scheduler_output.finished_req_ids:
            self.requests.pop(req_id, None)
        starts = {new.req_id: new.num_computed_tokens for new in scheduler_output.scheduled_new_reqs}
        for new in scheduler_output.scheduled_new_reqs:
            self.requests[new.req_id] = _RequestRows(prompt_len=len(new.prompt_token_ids or ()))
        cached = scheduler_output.scheduled_cached_reqs
        starts.update(zip(cached.req_ids, cached.num_computed_tokens, strict=True))

        counts = [scheduler_output.num_scheduled_tokens[r] for r in req_ids]
        rows = self.capturer.snapshot_routing_data(sum(counts)).numpy().copy()  # (tokens, L, k)
        outputs: dict[str, AuxRequestOutput] = {}
        offset = 0
        for req_id, count in zip(req_ids, counts, strict=True):
            step_rows, offset = rows[offset : offset + count], offset + count
            state = self.requests.setdefault(req_id, _RequestRows(prompt_len=0))
            start = int(starts[req_id])
            self._append(state, start, step_rows)
            if start + count >= state.prompt_len:  # the prompt is fully computed: this step samples a token
                merged = np.concatenate(state.pending) if state.pending else rows[:0]
                outputs[req_id] = AuxRequestOutput(token_start=state.emit_start, rows=merged)
                state.emit_start, state.pending = start + count, []
        self._step_outputs = outputs

    def _append(self, state: _RequestRows, start: int, step_rows: np.ndarray) -> None:
        end = state.next_position
        if start > end:  # a prefix-cache hit skipped these positions: no route, left as zero rows
            if not self._warned_prefix:
                logger.warning("routed experts: prefix-cache hit, %d prompt positions have no routes", start - end)
                self._warned_prefix = True
            state.pending.append(np.zeros((start - end, *step_rows.shape[1:]), dtype=step_rows.dtype))
        elif start < end:  # recomputed after preemption: keep what was already captured
            if start < state.emit_start:
                step_rows = step_rows[state.emit_start - start :]
                start = state.emit_start
            kept = np.concatenate(state.pending)[: start - state.emit_start] if state.pending else step_rows[:0]
            state.pending = [kept]
        state.pending.append(step_rows)

    def take_step_outputs(self) -> dict | None:
        outputs, self._step_outputs = self._step_outputs, None
        return outputs


def _wrap_load_model(load_model):
    @wraps(load_model)
    def wrapper(self, *args, **kwargs):
        out = load_model(self, *args, **kwargs)
        if self.vllm_config.aux_output_config.enable_return_routed_experts:
            from vllm.model_executor.layers.fused_moe.routed_experts_capturer import (
                RoutedExpertsCapturer,
                bind_routed_experts_capturer,
            )

            capturer = RoutedExpertsCapturer(
                max_num_batched_tokens=self.scheduler_config.max_num_batched_tokens, vllm_config=self.vllm_config
            )
            bind_routed_experts_capturer(self.model, capturer)
            self.stable_verl_routes = RouteBook(capturer)
            logger.info("routed experts: capturing %s routes per token on CPU", capturer.shape_per_token)
        return out

    return wrapper


def _attach(book: RouteBook | None, output) -> None:
    if book is None or output is None or not hasattr(output, "aux_output_connector_output"):
        return
    outputs = book.take_step_outputs()
    if outputs is not None:
        output.aux_output_connector_output = outputs


def _wrap_execute_model(execute_model):
    @wraps(execute_model)
    def wrapper(self, scheduler_output, *args, **kwargs):
        out = execute_model(self, scheduler_output, *args, **kwargs)
        book = getattr(self, "stable_verl_routes", None)
        if book is not None and scheduler_output.total_num_scheduled_tokens > 0:
            book.after_forward(scheduler_output, list(self.input_batch.req_ids))
            _attach(book, out)  # a runner that samples inside execute_model returns its output here
        return out

    return wrapper


def _wrap_sample_tokens(sample_tokens):
    @wraps(sample_tokens)
    def wrapper(self, *args, **kwargs):
        out = sample_tokens(self, *args, **kwargs)
        _attach(getattr(self, "stable_verl_routes", None), out)
        return out

    return wrapper


def _wrap_verify(verify):
    @wraps(verify)
    def wrapper(self) -> None:
        from vllm.platforms import current_platform

        if not (self.aux_output_config.enable_return_routed_experts and current_platform.is_cpu()):
            return verify(self)
        if self.model_config.runner_type != "generate" or not self.model_config.is_moe:
            raise ValueError("enable_return_routed_experts needs a generating MoE model")
        if self.cache_config.enable_prefix_caching:  # cached prefixes would come back without routes
            logger.info("routed experts on CPU: prefix caching turned off so every token is routed and returned")
            self.cache_config.enable_prefix_caching = False
        return None  # the CPU model runner captures routes itself (this module); no MRV2 / block store needed

    return wrapper


def register() -> None:
    """Install the CPU route return (vLLM CPU only; idempotent)."""
    from vllm.config import VllmConfig
    from vllm.v1.worker.cpu_model_runner import CPUModelRunner

    if getattr(CPUModelRunner, "_stable_verl_routes", False):
        return
    CPUModelRunner.load_model = _wrap_load_model(CPUModelRunner.load_model)
    CPUModelRunner.execute_model = _wrap_execute_model(CPUModelRunner.execute_model)
    CPUModelRunner.sample_tokens = _wrap_sample_tokens(CPUModelRunner.sample_tokens)
    VllmConfig._verify_aux_output_compatibility = _wrap_verify(VllmConfig._verify_aux_output_compatibility)
    CPUModelRunner._stable_verl_routes = True
