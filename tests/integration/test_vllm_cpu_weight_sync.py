"""vLLM-CPU must compute what HF computes after verl-style weight reloads, and under the precision knob.

verl syncs the actor into vLLM with ``model.load_weights`` + ``process_weights_after_loading`` after every
update (and once before step 1). Without stable-verl's vLLM plugin, vLLM-CPU's prepacked MoE experts turn a
reload of *identical* weights into garbage (prob gap 0.48 measured). Each check runs real vLLM (in-process
engine) in a fresh interpreter: vLLM loads its plugins once per process, and its kernel dispatcher walks
every imported module, which the pytest process fills with unrelated ones (e.g. moto's Flask app).
"""

from __future__ import annotations

import pytest

from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from tests.support.vllm_subprocess import run_vllm_script

pytestmark = pytest.mark.slow

COMMON = """
import sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from vllm import LLM, SamplingParams

path = sys.argv[1]
ids = AutoTokenizer.from_pretrained(path)("Compute left to right: 3 + 14 - 2. End with ####.")["input_ids"]
hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")

def hf_lp():
    with torch.no_grad():
        lp = torch.log_softmax(hf(torch.tensor([ids])).logits[0].double(), -1)
    return lp[:-1].gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]

def vllm_lp(llm):
    out = llm.generate({"prompt_token_ids": ids}, SamplingParams(max_tokens=1, prompt_logprobs=0), use_tqdm=False)
    plp = out[0].prompt_logprobs
    return torch.tensor([plp[i][ids[i]].logprob for i in range(1, len(ids))], dtype=torch.float64)

llm = LLM(path, dtype="float32", enforce_eager=True, gpu_memory_utilization=0.2, max_model_len=128, seed=0)
"""

RELOAD = (
    COMMON
    + """
from vllm.model_executor.model_loader.utils import process_weights_after_loading
gap_loaded = (vllm_lp(llm) - hf_lp()).abs().max().item()
torch.manual_seed(1)
with torch.no_grad():  # an "RL update" of every weight: experts, router, attention, lm_head
    for p in hf.parameters():
        p.add_(0.05 * torch.randn_like(p))
runner = llm.llm_engine.engine_core.engine_core.model_executor.driver_worker.worker.model_runner
for _ in range(2):  # what verl's weight sync does; reloads must be idempotent, not just correct once
    runner.model.load_weights((n, p.detach().clone()) for n, p in hf.named_parameters())
    process_weights_after_loading(runner.model, runner.model_config, torch.device("cpu"))
print("RESULT", gap_loaded, (vllm_lp(llm) - hf_lp()).abs().max().item())
"""
)

PRECISION = (
    COMMON
    + """
import os
from stable_verl.core.precision import round_model_weights
native = hf_lp()
round_model_weights(hf, os.environ["STABLE_VERL_ROLLOUT_PRECISION"])
v = vllm_lp(llm)
print("RESULT", (v - hf_lp()).abs().max().item(), (v - native).abs().max().item())
"""
)


def _run(script: str, model_path, **env: str) -> tuple[float, float]:
    first, second = map(float, run_vllm_script(script, model_path, **env).split())
    return first, second


@pytest.fixture(scope="module")
def tiny_moe(tmp_path_factory, tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "moe", TinyModelSpec(), tokenizer, seed=0)


def test_reload_of_updated_weights_is_exact(tiny_moe):
    gap_loaded, gap_after_sync = _run(RELOAD, tiny_moe)
    assert gap_loaded < 1e-4  # as loaded from disk
    assert gap_after_sync < 1e-4, f"vLLM diverged from the synced weights: max |dlogp| = {gap_after_sync:.3g}"


@pytest.mark.parametrize("precision", ["bf16", "fp8"])
def test_rollout_precision_knob_rounds_vllms_weights(tiny_moe, precision):
    """vLLM with the knob computes exactly what HF computes on identically rounded weights."""
    to_rounded, to_native = _run(PRECISION, tiny_moe, STABLE_VERL_ROLLOUT_PRECISION=precision)
    assert to_rounded < 1e-4  # vLLM sampled with the rounded weights ...
    assert to_native > 10 * max(to_rounded, 1e-6)  # ... which differ measurably from the trained ones
