"""What a user sees while a verl stage starts and runs, and the CPU environment every verl process gets."""

from __future__ import annotations

from pathlib import Path

from stable_verl.config import cpu_env
from stable_verl.config.stages import SFTStage
from stable_verl.launch.progress import progress_printer
from stable_verl.train import verl_command

# Lines as verl 0.9.1's main_ppo prints them on the CPU path (from a real rl.log), in order.
RL_LOG = [
    "2026-11-27 17:52:30,532\tINFO worker.py:2029 -- Started a local Ray instance. View the dashboard at ...",
    "(TaskRunnerV1 pid=15480) {'actor_rollout_ref': {'actor': {'_target_': 'verl.workers.config.FSDPActorConfig',",
    "(TaskRunnerV1 pid=15480)  'algorithm': {'_target_': 'verl.trainer.config.AlgoConfig',",
    "(WorkerDict pid=15672) Qwen3MoeForCausalLM contains 577.66K parameters",
    "(vLLMHttpServer pid=15769) ['serve',",
    "Loading safetensors checkpoint shards:   0% Completed | 0/1 [00:00<?, ?it/s]",
    "(WorkerDict pid=15672) INFO:2026-11-27 17:53:35,151:update_weights done, time cost: 1.76s",
    "(AgentLoopWorkerTQ pid=15988) Using dataset class: RLHFDataset",
    "(TaskRunnerV1 pid=15480) step:1 - actor/pg_loss:0.1 - reward/acc:0.25",
    "(AgentLoopWorkerTQ pid=15988) Using blocking ray.get inside async actor.",
    "(TaskRunnerV1 pid=15480) step:2 - actor/pg_loss:0.1 - reward/acc:0.25",
]


def test_startup_phases_are_echoed_once_each_in_order_then_steps():
    lines: list[str] = []
    steps: list[int] = []
    on_line = progress_printer("rl", 2, lines.append, on_step=steps.append)
    for line in RL_LOG:
        on_line(line)
    phases = [line.split("starting: ")[1].rsplit(" (", 1)[0] for line in lines if "starting:" in line]
    assert phases == [
        "Ray is up",
        "verl task runner started",
        "model built, wrapping it in FSDP",
        "vLLM rollout server starting",
        "vLLM loading weights",
        "actor weights synced into vLLM",
        "agent-loop workers starting, then step 1",
    ]
    assert [line for line in lines if "starting:" not in line] == ["[rl] step 1/2", "[rl] step 2/2"]
    assert steps == [1, 2]


def test_cpu_processes_get_one_openmp_thread_unless_the_user_set_it(monkeypatch):
    monkeypatch.setattr(cpu_env, "on_cpu", lambda: True)
    assert cpu_env.verl_env({})["OMP_NUM_THREADS"] == "1"
    assert cpu_env.verl_env({"OMP_NUM_THREADS": "4"})["OMP_NUM_THREADS"] == "4"


def test_sft_uses_the_configured_lr_schedule():
    argv = verl_command.sft_argv(SFTStage(), Path("m"), Path("t"), Path("v"), Path("out/ckpt"))
    assert "optim.lr_scheduler_type=cosine" in argv
    argv = verl_command.sft_argv(SFTStage(lr_schedule="constant"), Path("m"), Path("t"), Path("v"), Path("o/c"))
    assert "optim.lr_scheduler_type=constant" in argv
