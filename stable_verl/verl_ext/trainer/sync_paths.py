"""verl's synchronous code paths under the name ``stable_sync``, with a shorter replay-buffer poll.

verl's v1 trainer chooses its synchronous code paths (the bufferless replay buffer, whole-batch data loading, no
TransferQueue checkpoint) by ``trainer_mode == "sync"``. Registered as ``stable_sync``, a subclass of its sync
trainer would run the asynchronous ones, so it reports verl's own mode name.
"""

from __future__ import annotations

from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

#: How often the sync replay buffer checks whether the step's rollouts are all in (verl's default: 2 s). Every step
#: waits for its last rollout plus up to one interval: at 2 s that quantised ``timing_s/gen`` to 4, 6, 8 ... s on CPU.
#: ``+trainer.v1.sampler.poll_interval_s=<s>`` sets another (``bench_plugin_price`` runs ours at verl's 2 s).
REPLAY_POLL_S = 0.2


class SyncPaths(PPOTrainerSync):
    """Reports ``trainer_mode == "sync"`` whatever name it is registered under; polls the replay buffer every
    ``REPLAY_POLL_S`` seconds."""

    @property
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, registered_name: str) -> None:  # verl assigns config.trainer.v1.trainer_mode here
        pass

    def _build_replay_buffer(self) -> ReplayBuffer:
        buffer = super()._build_replay_buffer()
        buffer.poll_interval = float(self.config.trainer.v1.sampler.get("poll_interval_s", REPLAY_POLL_S))
        return buffer
