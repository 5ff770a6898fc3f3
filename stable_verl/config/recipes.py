"""RL recipes: an objective (advantage estimator, policy loss, aggregation, off-policiness) as YAML.

``configs/recipes/<name>.yaml`` holds the paper's arms (minirl, its ablations, grpo, cispo), shipped with the
package (:mod:`.shipped`). A recipe is validated when loaded and compiles to the verl Hydra overrides that select
it; ``stable-verl plan`` prints them.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from stable_verl.config.shipped import recipe_dir
from stable_verl.config.yaml_config import load_yaml
from stable_verl.core.loss_specs import LOSS_SPECS
from stable_verl.core.options import MiniRLOptions

# verl's aggregation modes (verl.trainer.ppo.core_algos.agg_loss)
AGG_MODES = ("token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm")
ROUTING_REPLAY_MODES = ("disabled", "R2", "R3")  # verl's router_replay.mode values
ROUTER_REPLAY_CONFIG = "verl.workers.config.EngineRouterReplayConfig"


@dataclass
class Recipe:
    """One RL objective, compiled to verl overrides."""

    name: str = "grpo"
    """Recipe name (the file stem)."""
    description: str = ""
    """One line: what the recipe is and where it comes from."""
    adv_estimator: str = "grpo"
    """verl advantage estimator ('minirl' = group mean, no std)."""
    norm_adv_by_std: bool = False
    """verl's norm_adv_by_std_in_grpo, used by its 'grpo' estimator (GRPO/CISPO recipes: true)."""
    loss_mode: str = "vanilla"
    """verl policy loss ('minirl', 'vanilla' = PPO clip, 'cispo', ...)."""
    loss_agg_mode: str = "token-mean"
    """verl aggregation; MiniRL: seq-mean-token-sum (token sum / #responses); length-norm: seq-mean-token-mean."""
    eps_low: float = 0.2
    """Lower clip (paper: 0.2)."""
    eps_high: float = 0.27
    """Upper clip (paper: 0.27)."""
    dual_clip: float = 3.0
    """verl's clip_ratio_c for A<0 (vanilla only); 1e9 disables it (Appendix A GRPO has none)."""
    minibatches: int = 1
    """N optimizer steps per rollout batch (1 = on-policy; the paper uses 2, 4, 8)."""
    minirl: MiniRLOptions = field(default_factory=MiniRLOptions)
    """The MiniRL loss's own switches (``loss_mode: minirl``; :data:`~stable_verl.core.loss_specs.LOSS_SPECS` says
    what they become)."""
    routing_replay: str = "disabled"
    """MoE Routing Replay (paper §5): 'R2' replays the training engine's old-policy routes in the updates,
    'R3' replays vLLM's routes in the old-log-prob pass and the updates (stable_verl.verl_ext.routing_engine)."""
    rollout_routes: bool = False
    """Ask vLLM for the experts it routed each token to. R3 needs it; with R2 or no replay it adds the
    routing-mismatch metrics (vLLM vs training engine)."""

    def __post_init__(self) -> None:
        if self.routing_replay not in ROUTING_REPLAY_MODES:
            raise ValueError(
                f"recipe {self.name}: routing_replay must be one of {ROUTING_REPLAY_MODES}, got {self.routing_replay!r}"
            )
        if self.routing_replay == "R3" and not self.rollout_routes:
            raise ValueError(f"recipe {self.name}: routing_replay R3 replays vLLM's routes; set rollout_routes: true")
        if self.minibatches < 1:
            raise ValueError(f"recipe {self.name}: minibatches must be >= 1, got {self.minibatches}")
        if self.loss_agg_mode not in AGG_MODES:
            raise ValueError(
                f"recipe {self.name}: loss_agg_mode must be one of {AGG_MODES}, got {self.loss_agg_mode!r}"
            )
        if self.dual_clip <= 1:
            raise ValueError(f"recipe {self.name}: dual_clip must be > 1, got {self.dual_clip}")
        self.minirl.with_clip(self.eps_low, self.eps_high)  # eps ranges, validated by the core config

    @property
    def uses_minirl_loss(self) -> bool:
        return self.loss_mode == "minirl"

    def overrides(self) -> list[str]:
        """The verl Hydra overrides that select this objective."""
        actor = "actor_rollout_ref.actor"
        out = [
            f"algorithm.adv_estimator={self.adv_estimator}",
            f"algorithm.norm_adv_by_std_in_grpo={self.norm_adv_by_std}",
            f"{actor}.policy_loss.loss_mode={self.loss_mode}",
            f"{actor}.loss_agg_mode={self.loss_agg_mode}",
            f"{actor}.clip_ratio_low={self.eps_low}",
            f"{actor}.clip_ratio_high={self.eps_high}",
            f"{actor}.clip_ratio_c={self.dual_clip:g}",
        ]
        spec = LOSS_SPECS.get(self.loss_mode)
        if spec is not None and spec.block is not None:  # the loss's own block: its config class, fields, needs
            block = getattr(self, spec.block)
            out.append(f"{actor}.policy_loss._target_={spec.config_class}")
            out += [f"+{actor}.policy_loss.{f.name}={getattr(block, f.name)}" for f in dataclasses.fields(block)]
            out += spec.needs(block)
        if self.routing_replay != "disabled":  # verl's fsdp.yaml has no router_replay block: add verl's dataclass
            out.append(
                f"+{actor}.fsdp_config.router_replay={{_target_:{ROUTER_REPLAY_CONFIG},mode:{self.routing_replay}}}"
            )
        if self.rollout_routes:
            out.append("actor_rollout_ref.rollout.enable_rollout_routing_replay=True")
        return out

    def check_registered(self) -> None:
        """Fail before launch if verl (with stable-verl's plugin) does not know the estimator or loss."""
        import verl  # noqa: F401  (loads stable-verl's verl plugin, which registers minirl)

        from stable_verl.verl_ext.registry import check_adv_estimator, check_policy_loss

        check_adv_estimator(self.adv_estimator)
        check_policy_loss(self.loss_mode)

    def check_model(self, model_path: str | Path) -> None:
        """Fail before launch if the recipe replays MoE routes but the model has no supported MoE router."""
        config = Path(model_path) / "config.json"
        model_type = json.loads(config.read_text()).get("model_type") if config.exists() else None
        self.check_model_type(model_type, str(model_path))

    def check_model_type(self, model_type: str | None, where: str) -> None:
        """:meth:`check_model` on a ``config.json``'s ``model_type`` (the model at ``where``)."""
        if self.routing_replay == "disabled" and not self.rollout_routes:
            return
        from stable_verl.core.routing import SUPPORTED_MODEL_TYPES

        if model_type not in SUPPORTED_MODEL_TYPES:
            raise ValueError(
                f"recipe {self.name} uses MoE routing replay, but the model at {where} is "
                f"{model_type!r}, not a supported MoE ({', '.join(SUPPORTED_MODEL_TYPES)})"
            )


def available_recipes() -> list[str]:
    return sorted(p.stem for p in recipe_dir().glob("*.yaml"))


def load_recipe(name: str, overrides: list[str] | None = None) -> Recipe:
    """Load ``configs/recipes/<name>.yaml`` plus ``key=value`` overrides; ValueError on bad input."""
    path = recipe_dir() / f"{name}.yaml"
    if not path.exists():
        raise ValueError(f"unknown recipe {name!r}; available: {', '.join(available_recipes())}")
    return load_yaml(path, [f"name={name}", *(overrides or [])], schema=Recipe)
