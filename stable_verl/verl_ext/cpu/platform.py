"""A ``cpu`` platform for verl 0.9.1, registered through verl's own ``PlatformRegistry``.

verl 0.9.1 knows nvidia/npu/rocm only and falls back to "nvidia" on a machine without an accelerator,
which makes every process reach for NCCL and ``torch.cuda``. This platform gives verl:

* the gloo collective backend and a ``torch.cuda``-shaped device module whose calls are CPU no-ops;
* ``current_device() == "cpu"`` (verl does ``model.to(get_device_id())``; 0 would mean cuda:0);
* the Ray resource name "GPU", so verl's placement groups can be satisfied by *logical* GPUs
  (``ray_init.num_gpus=N`` on a CPU box, see ``stable_verl.config.cpu_env``).

It is selected only when ``VERL_PLATFORM=cpu`` is set or no CUDA device exists, so on a GPU machine
registering it changes nothing.
"""

from __future__ import annotations

import contextlib
import functools
import types
from typing import Any

import torch

from stable_verl.env import CPU_VISIBLE_DEVICES


def _noop(*_args: Any, **_kwargs: Any) -> None:
    return None


def _zero(*_args: Any, **_kwargs: Any) -> int:
    return 0


# Stands in for ``torch.cuda`` wherever verl calls ``get_torch_device().<fn>``.
CPU_DEVICE_MODULE = types.SimpleNamespace(
    is_available=lambda: True,
    is_initialized=lambda: True,
    device_count=lambda: 1,
    current_device=lambda: "cpu",
    get_device_name=lambda *_a, **_k: "cpu",
    set_device=_noop,
    synchronize=_noop,
    empty_cache=_noop,
    ipc_collect=_noop,
    reset_peak_memory_stats=_noop,
    manual_seed=torch.manual_seed,
    manual_seed_all=torch.manual_seed,
    get_rng_state=torch.get_rng_state,
    set_rng_state=torch.set_rng_state,
    memory_allocated=_zero,
    memory_reserved=_zero,
    max_memory_allocated=_zero,
    max_memory_reserved=_zero,
    mem_get_info=lambda *_a, **_k: (0, 0),
    Stream=getattr(torch.cpu, "Stream", None),
    Event=getattr(torch.cpu, "Event", None),
    stream=getattr(torch.cpu, "stream", contextlib.nullcontext),
    current_stream=getattr(torch.cpu, "current_stream", _noop),
)

# verl builds f"cpu:gloo,{device}:{backend}", i.e. "cpu:gloo,cpu:gloo" here, which torch rejects.
_DUPLICATE_BACKEND = "cpu:gloo,cpu:gloo"


def _dedupe_backend(init_process_group):
    @functools.wraps(init_process_group)
    def wrapper(*args: Any, **kwargs: Any):
        if kwargs.get("backend") == _DUPLICATE_BACKEND:
            kwargs["backend"] = "cpu:gloo"
        return init_process_group(*args, **kwargs)

    wrapper._stable_verl_cpu = True  # type: ignore[attr-defined]
    return wrapper


def cpu_selected() -> bool:
    """True when verl will (or should) run on the CPU platform in this process."""
    import os

    requested = os.environ.get("VERL_PLATFORM", "").strip().lower()
    if requested:
        return requested == "cpu"
    return not torch.cuda.is_available()


def register() -> None:
    """Register the ``cpu`` platform with verl; idempotent, a no-op for the collective patch off-CPU."""
    from verl.plugin.platform.platform_base import PlatformBase
    from verl.plugin.platform.platform_manager import PlatformRegistry

    if PlatformRegistry.get("cpu") is None:

        @PlatformRegistry.register(platform="cpu")
        class PlatformCPU(PlatformBase):
            device_name = property(lambda self: "cpu")
            vendor_name = property(lambda self: "cpu")
            device_module = property(lambda self: CPU_DEVICE_MODULE)

            def is_available(self) -> bool:
                return True

            def is_platform_available(self, use_smi_check: bool = False) -> bool:
                return not torch.cuda.is_available()

            def current_device(self) -> str:  # type: ignore[override]
                return "cpu"

            def device_count(self) -> int:
                return 1

            def set_device(self, device_index: int) -> None:
                return None

            def synchronize(self, device_index: int | None = None) -> None:
                return None

            def manual_seed(self, seed: int) -> None:
                torch.manual_seed(seed)

            def manual_seed_all(self, seed: int) -> None:
                torch.manual_seed(seed)

            def set_allocator_settings(self, settings: str) -> None:
                return None

            def empty_cache(self) -> None:
                return None

            def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
                return None, None

            def communication_backend_name(self) -> str:
                return "gloo"

            def visible_devices_envvar(self) -> str:
                return CPU_VISIBLE_DEVICES.name

            @contextlib.contextmanager
            def nvtx_range(self, msg: str):
                yield

            def profiler_start(self) -> None:
                return None

            def profiler_stop(self) -> None:
                return None

            def ray_resource_name(self) -> str:
                return "GPU"  # logical GPUs declared with ray.init(num_gpus=N)

            def ray_resource_options(self, num_gpus: float) -> dict[str, Any]:
                return {"num_gpus": num_gpus}

            def ray_noset_envvars(self) -> list[str]:
                return []

            def is_ipc_supported(self) -> bool:
                return False

            def cudart(self) -> Any:
                return None

    if cpu_selected():
        import torch.distributed as dist

        if not getattr(dist.init_process_group, "_stable_verl_cpu", False):
            dist.init_process_group = _dedupe_backend(dist.init_process_group)
