"""The CPU compatibility plugins, exercised through verl's and vLLM's own loaders (no mocks)."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import sys

import pytest
import torch

from tests.support import progress


def _run(code: str, **env: str) -> str:
    """Run ``code`` in a fresh interpreter (plugins load at import time, once per process)."""
    full_env = {**os.environ, **env}
    out = progress.run([sys.executable, "-c", code], env=full_env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


# What verl's own loaders see in one fresh interpreter with VERL_PLATFORM=cpu (as the pipeline sets it); one process
# for all of them, since importing verl takes most of the time. The platform-only and auto-detection runs below
# need other environments.
VERL_FACTS = """
import json, os
import verl
from verl.utils.device import get_device_name, get_nccl_backend, get_resource_name, get_device_id
facts = {"device": [get_device_name(), get_nccl_backend(), get_resource_name(), get_device_id()]}
from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY
from verl.workers.engine import EngineRegistry
engines = {cls.__name__ for c in EngineRegistry._engines["language_model"].values() for cls in c.values()}
facts["registered"] = ["minirl" in POLICY_LOSS_REGISTRY, "stable_sync" in TRAINER_REGISTRY,
                       "RoutingReplayFSDPEngine" in engines]
import verl.third_party.vllm as v
facts["vllm_version"] = v.vllm_version
import verl.trainer.main_ppo
from verl.plugin.platform.platform_manager import get_platform
from verl.trainer.ppo.v1.trainer_base import get_trainer_cls
facts["main_ppo"] = [get_platform().device_name, get_trainer_cls("stable_sync").__name__]
import torch.distributed as dist
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29533", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
from verl.utils.distributed import initialize_global_process_group
initialize_global_process_group()
facts["process_group"] = [dist.get_backend(), dist.get_world_size()]
from stable_verl.verl_ext import tq_scope
facts["tq_scoped"] = tq_scope.installed()
print(json.dumps(facts))
"""


@pytest.fixture(scope="module")
def verl_facts() -> dict:
    return json.loads(_run(VERL_FACTS, VERL_PLATFORM="cpu"))


def test_entry_points_are_declared():
    verl_eps = {ep.name: ep.value for ep in md.entry_points(group="verl.plugins")}
    vllm_eps = {ep.name: ep.value for ep in md.entry_points(group="vllm.general_plugins")}
    assert verl_eps["stable_verl"] == "stable_verl.verl_ext.verl_plugin"
    assert vllm_eps["stable_verl_cpu"] == "stable_verl.verl_ext.vllm_cpu_plugin:register"


def test_import_verl_registers_and_selects_the_cpu_platform(verl_facts):
    # Explicit selection, as the pipeline sets it ...
    assert verl_facts["device"] == ["cpu", "gloo", "GPU", "cpu"]
    # ... and auto-detection on a machine without CUDA (verl itself would fall back to "nvidia").
    if not torch.cuda.is_available():
        code = (
            "import verl\n"
            "from verl.utils.device import get_device_name, get_nccl_backend, get_resource_name, get_device_id\n"
            "print(get_device_name(), get_nccl_backend(), get_resource_name(), get_device_id())"
        )
        env = {k: v for k, v in os.environ.items() if k != "VERL_PLATFORM"}
        out = progress.run([sys.executable, "-c", code], env=env)
        assert out.stdout.strip().splitlines()[-1] == "cpu gloo GPU cpu"


def test_gloo_process_group_starts_with_verls_backend_string(verl_facts):
    # verl.utils.distributed builds "cpu:gloo,cpu:gloo" on this platform; torch alone rejects it.
    assert verl_facts["process_group"] == ["cpu:gloo", 1]


def test_vllm_cpu_answers_to_the_name_verl_looks_up(verl_facts):
    assert md.version("vllm") == "0.32.0+cpu"  # infra/vllm-dist-alias
    assert md.version("vllm-cpu") == "0.32.0"
    # verl's own version gates (they raise at import when the lookup fails)
    assert verl_facts["vllm_version"] == "0.32.0+cpu"


def test_main_ppo_sees_the_cpu_platform_and_our_trainer(verl_facts):
    # The plugin must register the platform before anything imports verl's trainer (which queries it).
    assert verl_facts["main_ppo"] == ["cpu", "StableTrainerSync"]


def test_vllm_plugin_keeps_linear_weights_in_place():
    """vLLM's real UnquantizedLinearMethod keeps the Parameter that verl's weight sync reloads."""
    code = (
        "import torch\n"
        "from vllm.plugins import load_general_plugins\n"
        "load_general_plugins()\n"
        "from vllm.model_executor.layers.linear import UnquantizedLinearMethod\n"
        "layer = torch.nn.Module(); w = torch.nn.Parameter(torch.randn(64, 32), requires_grad=False)\n"
        "layer.register_parameter('weight', w); layer.bias = None\n"
        "method = UnquantizedLinearMethod(); method.process_weights_after_loading(layer)\n"
        "x = torch.randn(3, 32)\n"
        "before = method.apply(layer, x)\n"
        "layer.weight.data.mul_(2.0)  # what load_weights does in place after an RL update\n"
        "after = method.apply(layer, x)\n"
        "print(layer.weight is w, layer.weight.shape == (64, 32), torch.allclose(after, 2 * before))"
    )
    assert _run(code, VLLM_TARGET_DEVICE="cpu") == "True True True"


def test_reward_extra_metrics_average_over_real_rows():
    import numpy as np

    from stable_verl.verl_ext.trainer.metrics import reward_extra_metrics

    fields = [
        {"reward_extra_info": {"acc": 1.0, "format": 1.0, "note": "x"}},
        {"reward_extra_info": {"acc": 0.0, "format": 1.0}},
        {"reward_extra_info": {"acc": 1.0, "format": 0.0}},  # a padding row: ignored
    ]
    out = reward_extra_metrics(fields, np.array([False, False, True]))
    assert out == {"reward/acc": 0.5, "reward/format": 1.0}


def test_reward_extra_metrics_count_boolean_acc_as_0_1():
    """verl's math scorers return ``acc`` as a bool (numpy's too): the training metric must keep it, as eval does."""
    import numpy as np

    from stable_verl.verl_ext.trainer.metrics import reward_extra_metrics

    fields = [{"reward_extra_info": {"acc": True}}, {"reward_extra_info": {"acc": np.bool_(False)}}]
    fields.append({"reward_extra_info": {"acc": False}})
    assert reward_extra_metrics(fields, np.array([False, False, False])) == {"reward/acc": 1 / 3}


def test_platform_only_plugin_leaves_verls_builtins_in_place():
    """The plugin-price benchmark's baseline: the CPU platform, and nothing of stable-verl's method in verl."""
    from stable_verl.verl_ext.cpu.verl_plugin import PLATFORM_ONLY_ENV

    code = (
        "import sys, verl\n"
        "from verl.utils.device import get_device_name\n"
        "from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY\n"
        "from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY\n"
        "from verl.workers.engine import EngineRegistry\n"
        "engines = {cls.__name__ for c in EngineRegistry._engines['language_model'].values() for cls in c.values()}\n"
        "ours = 'minirl' in POLICY_LOSS_REGISTRY or 'stable_sync' in TRAINER_REGISTRY\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('stable_verl.verl_ext.') and '.cpu' not in m)\n"
        "print(get_device_name(), ours, 'RoutingReplayFSDPEngine' in engines, loaded)"
    )
    assert _run(code, VERL_PLATFORM="cpu", **PLATFORM_ONLY_ENV) == "cpu False False []"


def test_import_verl_scopes_transfer_queue_to_the_ray_job(verl_facts):
    """Every verl process finds its own job's TransferQueue (tests/integration/test_tq_two_jobs.py: with Ray)."""
    assert verl_facts["tq_scoped"] is True


def test_the_entry_point_registers_our_loss_trainer_and_engine(verl_facts):
    assert verl_facts["registered"] == [True, True, True]


WEIGHT_SYNC_ENDS = """
import json
import verl
from verl.workers.rollout.vllm_rollout import bucketed_weight_transfer as ends
handle = "ipc:///tmp/rl-colocate-zmq-01000000-replica-0-rank-0.sock"
sender = ends.BucketedWeightSender(zmq_handle=handle, use_shm=True)
receiver = ends.BucketedWeightReceiver(handle, device=None, use_shm=True)
other = ends.BucketedWeightSender(zmq_handle="ipc:///tmp/elsewhere.sock")
print(json.dumps([sender.zmq_handle, receiver.zmq_handle, other.zmq_handle]))
"""


def test_import_verl_scopes_the_weight_sync_socket_to_the_ray_cluster():
    """Both ends of verl's weight-sync socket name the node's raylet, set by Ray in its workers (and the children
    they start); tests/integration/test_weight_sync_two_clusters.py: two local clusters at once."""
    scoped = "ipc:///tmp/rl-colocate-zmq-raylet4242-01000000-replica-0-rank-0.sock"
    got = json.loads(_run(WEIGHT_SYNC_ENDS, VERL_PLATFORM="cpu", RAY_RAYLET_PID="4242"))
    assert got == [scoped, scoped, "ipc:///tmp/elsewhere.sock"]
