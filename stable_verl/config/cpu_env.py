"""What verl + vLLM need to run on a CPU-only machine: environment variables and Hydra overrides.

Every setting here is one the CPU path was measured to need (see docs/explanation/cpu-path.md); the
pipeline applies them when no CUDA device is present, so users never set them by hand.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

import psutil

from stable_verl.env import NATIVE_BF16
from stable_verl.env import native_bf16 as forced_native_bf16
from stable_verl.launch import tracking

# Environment for every verl process (Ray workers inherit it from the driver).
CPU_ENV: dict[str, str] = {
    "VERL_PLATFORM": "cpu",  # select stable_verl's CPU platform (gloo, logical Ray GPUs)
    "VERL_ENGINE_DEVICE": "cuda",  # verl registers its FSDP engine under "cuda" only; it runs fine on CPU
    "VLLM_TARGET_DEVICE": "cpu",  # vLLM platform detection
    "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB of KV cache for the tiny models
}

# Nothing is downloaded at run time on CPU (the tests, CI). On a GPU verl may reach the Hub (it reads a resolved
# local folder anyway) unless the user sets these, which a local run inherits and a Ray Job is given.
OFFLINE_ENV: dict[str, str] = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}

# Defaults for a CPU run that a user's own environment overrides. One OpenMP thread per process: a verl RL run
# is several busy processes (FSDP worker, vLLM, Ray actors), and on 2 cores torch's default of one spinning
# thread per core and process oversubscribes them (verl SFT, 2 threads, beside a second busy process: 1.1-2.9 s
# a step instead of 0.17 s). vLLM's CPU worker sets its own thread count (VLLM_CPU_OMP_THREADS_BIND).
# W&B is off on CPU unless the user's WANDB_MODE says otherwise (offline: local files; online: their account).
CPU_ENV_DEFAULTS: dict[str, str] = {"OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}

# Environment for every run, CPU or GPU: output is streamed.
COMMON_ENV: dict[str, str] = {
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
    "RAY_DEDUP_LOGS": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}


def on_cpu() -> bool:
    """True when no CUDA device is visible (this machine, CI). A torch built for CPU only (the CPU stack) answers
    from its version file, so that compiling and planning a flow import no torch there."""
    if not _torch_has_gpu_build():
        return True
    import torch

    return not torch.cuda.is_available()


@functools.cache
def _torch_has_gpu_build() -> bool:
    """Whether the installed torch was built with CUDA or ROCm (``torch/version.py``'s ``cuda`` / ``hip``), read
    without importing torch; True when that cannot be told (then torch is asked)."""
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return True
    try:
        tree = ast.parse(Path(spec.submodule_search_locations[0], "version.py").read_text())
    except (OSError, SyntaxError):
        return True
    builds: dict[str, ast.expr] = {}
    for node in tree.body:
        targets = (
            node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        )
        builds |= {t.id: node.value for t in targets if isinstance(t, ast.Name) and node.value is not None}
    if "cuda" not in builds or "hip" not in builds:
        return True
    return any(not (isinstance(builds[k], ast.Constant) and builds[k].value is None) for k in ("cuda", "hip"))


NATIVE_BF16_ENV = NATIVE_BF16.name
"""``0`` forces the no-native-bf16 path (emulate a CPU without it), ``1`` the native one; unset: detected."""
# CPU flags of native bf16 arithmetic: x86 AVX512-BF16 and AMX-BF16 (/proc/cpuinfo ``flags``), Arm's BF16 extension
# (``Features``). Without them torch computes bf16 by conversion: a 256x128x512 matmul, one thread, on AVX2: fp32
# 0.45 ms, bf16 25.6 ms (issue 24). torch's capability string alone does not tell: it says 'AVX512' here, a CPU
# with avx512_bf16.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.cache
def cpu_capability() -> str:
    """The vector ISA torch dispatches CPU kernels to on this machine ('AVX2', 'AVX512', 'DEFAULT', ...)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


@functools.cache
def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (x86 ``flags``, Arm ``Features``) of its first processor; empty if unknown."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (:data:`BF16_FLAGS`); ``$STABLE_VERL_NATIVE_BF16`` (0/1) decides
    instead when set."""
    forced = forced_native_bf16()
    return bool(BF16_FLAGS & cpu_flags()) if forced is None else forced


def emulate_bf16(cpu: bool | None = None) -> bool:
    """bf16 compute is replaced by fp32 (``cpu``: where verl runs has no GPU; None: as this machine): the CPU
    settings apply and the CPU lacks native bf16."""
    return (on_cpu() if cpu is None else cpu) and not native_bf16()


def rollout_numerics(dtype: str, precision: str, cpu: bool | None = None) -> tuple[str, str]:
    """(vLLM dtype, weight rounding) of a rollout configured as ``dtype``/``precision``.

    Without native bf16 a bf16 rollout is emulated the way the precision stress knob works: vLLM computes in fp32
    on weights rounded to bf16 (an fp8 rounding, coarser, is kept as it is). Activations stay fp32, so the
    emulated gap is the weights' part of the real one. Elsewhere: unchanged.
    """
    if dtype == "bfloat16" and emulate_bf16(cpu):
        return "float32", "bf16" if precision == "native" else precision
    return dtype, precision


def platform_facts(cpu: bool | None = None) -> dict[str, object]:
    """What a run record says about the machine that built the run's command (``cpu``: as :func:`emulate_bf16`)."""
    facts: dict[str, object] = {"cpu_capability": cpu_capability(), "native_bf16": native_bf16()}
    if emulate_bf16(cpu):
        facts["bf16"] = "emulated: SFT/RL train in fp32, a bf16 rollout runs fp32 on bf16-rounded weights"
    return facts


def verl_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for a local verl subprocess: ``base`` (default: this process's) plus the required settings."""
    env = dict(os.environ if base is None else base)
    env.update(COMMON_ENV)
    if on_cpu():
        env.update({**OFFLINE_ENV, **CPU_ENV})
        for key, value in CPU_ENV_DEFAULTS.items():
            env.setdefault(key, value)
        # TransferQueue asks for 8 torch threads per put/get and, on fewer cores, clamps and logs a warning each
        # time (40 of them end a failed run's log): ask for what it would clamp to.
        env.setdefault("TQ_NUM_THREADS", str(min(8, psutil.cpu_count(logical=False) or 1)))
        env.pop("RAY_ADDRESS", None)  # a local CPU run always starts its own Ray
    return env


def cluster_env(cpu: bool | None = None, backends: Sequence[str] = ()) -> dict[str, str]:
    """The variables a verl Ray Job needs, and only those (its ``runtime_env.env_vars``): the cluster's nodes
    bring their own environment, and nothing of this machine's (paths, credentials) is sent there but the
    non-secret settings of the trackers in ``backends`` (:func:`.tracking.forwarded`). The job's driver finds the
    cluster through the ``RAY_ADDRESS`` Ray sets for it. ``cpu``: the nodes have no GPU (None: as this machine)."""
    env = dict(COMMON_ENV)
    if on_cpu() if cpu is None else cpu:
        env.update({**OFFLINE_ENV, **CPU_ENV})
        env.update({k: os.environ.get(k, v) for k, v in CPU_ENV_DEFAULTS.items()})
    else:
        env.update({k: os.environ[k] for k in OFFLINE_ENV if k in os.environ})
    env.update(tracking.forwarded(backends, os.environ))
    return env


FP32_ENGINE = "{param_dtype:fp32,reduce_dtype:fp32,buffer_dtype:fp32}"
"""verl FSDP engine mixed-precision policy that computes in fp32 (its default autocasts to bf16)."""


def sft_cpu_overrides() -> list[str]:
    """Hydra overrides ``verl.trainer.sft_trainer`` needs on CPU (fp32 compute where the CPU lacks native bf16)."""
    fp32 = [] if native_bf16() else [f"+engine.mixed_precision={FP32_ENGINE}"]
    return [
        "trainer.device=cpu",
        "engine.strategy=fsdp2",  # FSDP1 passes device_id=0 (a CUDA index); FSDP2 follows the platform
        "engine.use_torch_compile=False",
        "+model.override_config.attn_implementation=sdpa",  # no flash-attn on CPU
        # padded batches (packed is exact too: tests/unit/models/test_cpu_attention.py)
        "model.use_remove_padding=False",
        "model.enable_gradient_checkpointing=False",
        "data.num_workers=0",
        *fp32,
    ]


def local_ray_overrides(num_cpus: int = 16, num_gpus: int = 1) -> list[str]:
    """The local Ray a CPU run starts for itself (not on a cluster, whose nodes declare their own resources).

    ``num_cpus`` is a *logical* count: main_ppo starts a TaskRunner, a TransferQueue controller and
    storage units and several reward workers, which starve (and hang silently) on 2 real CPUs.
    """
    return [
        f"ray_kwargs.ray_init.num_cpus={num_cpus}",
        f"+ray_kwargs.ray_init.num_gpus={num_gpus}",  # logical GPUs, matched by the CPU platform's resource name
        # No dashboard: nothing in verl or vLLM uses Ray's state API, and its head process plus nine sub-heads each
        # import Ray on the 2 cores the run is starting on.
        "+ray_kwargs.ray_init.include_dashboard=False",
    ]


def ppo_cpu_overrides(num_cpus: int = 16, num_gpus: int = 1, cluster: bool = False) -> list[str]:
    """Hydra overrides ``verl.trainer.main_ppo`` needs on CPU; ``cluster``: it joins an existing Ray cluster
    (a Ray Job), whose nodes declare the CPUs and logical GPUs (``ray start --num-cpus 16 --num-gpus 1``).

    One agent-loop worker and one storage unit instead of verl's 8 + 8 Ray actors: each actor imports
    torch and verl, and on 2 cores starting them was most of the warm-up (RL, 3 steps: 188 s -> 113 s).
    """
    return [
        "trainer.device=cpu",
        *([] if cluster else local_ray_overrides(num_cpus, num_gpus)),
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        # Padded micro batches. verl's packed call (remove-padding: no mask, packed position ids, no KV cache) is
        # exact with sdpa as well (tests/unit/models/test_cpu_attention.py); the R3 run test turns it on.
        "actor_rollout_ref.model.use_remove_padding=False",
        "actor_rollout_ref.model.enable_gradient_checkpointing=False",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.ref.strategy=fsdp2",
        "actor_rollout_ref.actor.use_torch_compile=False",
        "actor_rollout_ref.ref.use_torch_compile=False",
        "actor_rollout_ref.rollout.enforce_eager=True",  # no CUDA graphs
        "actor_rollout_ref.rollout.free_cache_engine=False",
        "+actor_rollout_ref.rollout.enable_sleep_mode=False",  # sleep mode needs CUDA
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.2",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.load_format=auto",
        "data.dataloader_num_workers=0",
    ]
