"""vLLM-CPU returns the experts it routed each token to, and they are the ones the model's routers pick.

verl's R3 reads ``outputs[0].routed_experts``; vLLM 0.32 refuses ``enable_return_routed_experts`` on CPU
(Model Runner V2 + Triton only). stable-verl's vLLM plugin binds vLLM's own ``RoutedExpertsCapturer`` on CPU and
hands the rows to vLLM's scheduler/output processor. Checked here with real vLLM in a fresh interpreter (see
test_vllm_cpu_weight_sync.py for why), with chunked prefill and several requests per batch.
"""

from __future__ import annotations

import json

import pytest

from stable_verl.models.tiny import TinyModelSpec, save_tiny_model
from tests.support.vllm_subprocess import run_vllm_script

pytestmark = pytest.mark.slow

SCRIPT = """
import json, sys, torch, numpy as np
from transformers import AutoModelForCausalLM, AutoTokenizer
from vllm import LLM, SamplingParams
from stable_verl.core.routing import RoutingReplay, route_set_mismatch, valid_route_rows

path = sys.argv[1]
tok = AutoTokenizer.from_pretrained(path)
prompts = ["Compute left to right: 3 + 14 - 2. End with ####.", "Compute: 7 * 2.", "Hi"] * 2
llm = LLM(path, dtype="float32", enforce_eager=True, gpu_memory_utilization=0.2, max_model_len=128, seed=0,
          enable_return_routed_experts=True, max_num_batched_tokens=16)  # 16: long prompts prefill in chunks
outs = llm.generate([{"prompt_token_ids": tok(p)["input_ids"]} for p in prompts],
                    SamplingParams(max_tokens=12, temperature=1.0), use_tqdm=False)
hf = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="sdpa")
rr = RoutingReplay.attach(hf)
result = {"prefix_caching": llm.llm_engine.vllm_config.cache_config.enable_prefix_caching, "requests": []}
for p, o in zip(prompts, outs):
    ids = tok(p)["input_ids"] + list(o.outputs[0].token_ids)
    routes = torch.from_numpy(np.asarray(o.outputs[0].routed_experts))
    with torch.no_grad(), rr.record():
        hf(torch.tensor([ids]))
    native = rr.routes()[: routes.shape[0]]
    result["requests"].append({
        "tokens": len(ids), "shape": list(routes.shape), "dtype": str(routes.dtype),
        "valid": valid_route_rows(routes).float().mean().item(),
        "mismatch": route_set_mismatch(native, routes).float().mean().item(),
    })
print("RESULT" + json.dumps(result))
"""


@pytest.fixture(scope="module")
def tiny_moe(tmp_path_factory, tokenizer):
    return save_tiny_model(tmp_path_factory.mktemp("m") / "moe", TinyModelSpec(), tokenizer, seed=0)


def test_vllm_cpu_returns_the_routes_its_routers_pick(tiny_moe):
    result = json.loads(run_vllm_script(SCRIPT, tiny_moe))
    assert result["prefix_caching"] is False  # turned off: cached prefixes would come back without routes
    spec = TinyModelSpec()
    for req in result["requests"]:
        # every token but the last sampled one went through the model: [prompt + response - 1, layers, k]
        assert req["shape"] == [req["tokens"] - 1, spec.num_layers, spec.top_k]
        assert req["dtype"] == "torch.uint8"  # vLLM's compact dtype for <= 256 experts
        assert req["valid"] == 1.0  # a real top-k (distinct experts) for every row
        assert req["mismatch"] == 0.0  # fp32 on both sides: vLLM routed exactly as the HF routers pick
