"""Run a real-vLLM check script in a fresh interpreter (vLLM loads its plugins once per process, and its kernel
dispatcher walks every imported module, which a pytest process fills with unrelated ones)."""

from __future__ import annotations

import os
import sys

from tests.support import progress


def run_vllm_script(script: str, model_path, **env: str) -> str:
    """Run ``script`` with ``model_path`` as argv[1] on vLLM-CPU (in-process engine); return what follows RESULT."""
    full_env = {
        **os.environ,
        "VLLM_TARGET_DEVICE": "cpu",
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        **env,
    }
    out = progress.run([sys.executable, "-c", script, str(model_path)], env=full_env)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.split("RESULT")[1]
