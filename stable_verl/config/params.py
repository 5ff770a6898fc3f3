"""Flow parameters: pydantic models over the stage dataclasses, loaded from OmegaConf YAML + overrides.

Every flow takes one of these (Prefect validates it and renders it as a form in the UI)::

    params = RLFlowParams.from_config("configs/coldstart.yaml", ["rl.total_steps=5"])

Bad input fails here, before anything starts, with a one-line ``ValueError`` naming the key: unknown
keys, wrong types, an unknown recipe or teacher or benchmark, batch sizes that do not divide.
Credentials are never parameters: S3 access comes from the AWS environment (see ``StoreParams``).
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from stable_verl.artifacts import ArtifactStore
from stable_verl.config.eval_settings import EvalEngine, EvalSettings
from stable_verl.config.grid_cell import GridCell
from stable_verl.config.selector import RunSelector
from stable_verl.config.stages import Logging, RLStage, SFTStage
from stable_verl.config.yaml_config import load_yaml
from stable_verl.launch.stall import DEFAULT_STALL_S
from stable_verl.models.hf import HFModel
from stable_verl.models.spec import TinyModelSpec
from stable_verl.tasks.spec import TaskSpec
from stable_verl.tasks.teachers import TEACHERS, get_teacher
from stable_verl.tasks.user_task import TaskData, benchmark_names, init_names

# pydantic's names of the model and task unions' members in error locations: not config keys
_UNION_TAGS = ("tiny", "hf", "builtin", "data")


class _Model(BaseModel):
    """Unknown keys are errors; ``from_config`` is the one way in from YAML and the command line."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)  # field docstrings: Prefect form help

    @classmethod
    def from_config(cls, path: str | None, overrides: list[str]) -> Self:
        """``path`` (YAML, optional) merged with ``a.b=c`` overrides, validated; one-line ValueError on bad input."""
        raw = load_yaml(path or None, overrides)
        try:
            return cls.model_validate(raw)
        except ValidationError as e:
            err = e.errors()[0]
            loc = [str(p) for p in err["loc"] if p not in _UNION_TAGS]
            where = " at " + ".".join(loc) if loc else ""
            raise ValueError(f"invalid config{where}: {err['msg'].removeprefix('Value error, ')}") from None


class StoreParams(_Model):
    """Where artifacts go. Credentials come from the AWS environment (AWS_ACCESS_KEY_ID, ...), never from here."""

    root: str | None = None
    """A folder or ``s3://bucket/prefix``; default ``$STABLE_VERL_ARTIFACT_ROOT``, else ``./artifacts``."""
    endpoint_url: str | None = None
    """S3-compatible endpoint (MinIO, moto); default ``$STABLE_VERL_S3_ENDPOINT`` / ``$AWS_ENDPOINT_URL[_S3]``."""

    def open(self) -> ArtifactStore:
        return ArtifactStore.from_env(self.root, endpoint_url=self.endpoint_url)


@pydantic_dataclass(frozen=True, config=ConfigDict(extra="forbid", use_attribute_docstrings=True))
class EvalParams(EvalSettings):
    """Checkpoint evaluation: avg@k on held-out benchmarks, sampled with vLLM (the sampling settings, then what to
    evaluate)."""

    benchmarks: list[str] | None = None
    """Benchmarks to score (None: every benchmark of the task; the built-in task's are bench_id, bench_hard)."""
    n_prompts: int | None = Field(None, ge=1)
    """Score only the first n prompts of each benchmark (None: all)."""
    steps: Literal["last", "all"] | list[int] = "last"
    """Checkpoints of each RL run to evaluate ('last', 'all' or a list of steps); SFT runs: their last."""
    stall_s: int = Field(DEFAULT_STALL_S, ge=1)
    """The evaluation process is killed and the evaluation fails when for this long it prints no new line and its
    processes use no CPU (stable_verl/launch/stall.py); a Ray Job: no new line."""
    timeout_s: int | None = Field(None, ge=1)
    """Optional total wall-clock limit of the evaluation process (None: none; a slow machine is not a hung run)."""
    engine: EvalEngine = Field(default_factory=EvalEngine)
    """vLLM's layout (tensor parallelism, memory share, max model length): operational, in no id or stored result."""

    def benchmark_list(self, task: Task) -> list[str]:
        """The benchmarks to score: those named, else all of ``task``'s."""
        return list(self.benchmarks) if self.benchmarks is not None else benchmark_names(task)

    def settings(self) -> EvalSettings:
        """The sampling settings alone (what results.json records)."""
        return EvalSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(EvalSettings)})


class LauncherParams(_Model):
    """Where verl stages run: a local subprocess (default) or a Ray Job on an existing Ray cluster.

    On a cluster nothing is shared with the flow's machine but the store: the flow uploads the stage's inputs, each
    node materialises them into its ``STABLE_VERL_NODE_DIR``, and checkpoints and metrics go to the store from the
    node that saves them (docs/how-to/cluster.md).
    """

    kind: Literal["local", "ray_job"] = "local"
    """'local': verl runs here and starts its own Ray; 'ray_job': submitted to the cluster's Jobs API."""
    ray_address: str | None = None
    """The cluster's Jobs API, ``http://<head>:8265``; default ``$RAY_ADDRESS``. Used by 'ray_job' only."""
    python: str = "python"
    """Interpreter on the cluster's nodes that has stable-verl installed (the job's entrypoint)."""
    device: Literal["auto", "cpu", "gpu"] = "auto"
    """What the cluster's nodes run verl on ('ray_job' only): 'auto' = what this machine sees (no CUDA: the CPU
    settings). Set 'gpu' to drive a GPU cluster from a machine without one (a Prefect worker, a KubeRay head pod)."""
    max_concurrent: int | None = Field(None, ge=1)
    """Independent stages a multi-stage flow runs at once (the stability grid's cells, the cold-start comparison's
    RL stages, and on a cluster its SFTs); None: 1 with 'local' (one RL stage keeps every core busy; the local SFTs
    all run at once), with 'ray_job' the cluster's GPUs over one stage's (``nnodes`` x ``n_gpus_per_node``).
    Operational: in no run id."""

    @model_validator(mode="after")
    def _device_on_cluster(self) -> Self:
        if self.device != "auto" and not self.on_cluster:
            raise ValueError("launcher.device applies to launcher.kind=ray_job; a local run uses this machine's device")
        return self

    @property
    def on_cluster(self) -> bool:
        return self.kind == "ray_job"

    @property
    def cpu(self) -> bool | None:
        """Whether the CPU settings apply: None when ``device`` is 'auto' (decided by this machine)."""
        return None if self.device == "auto" else self.device == "cpu"


def _model_kind(value: Any) -> str:
    """'hf' for a user's model (it has a ``path``), else 'tiny' (the built-in model's shape)."""
    return "hf" if (value.get("path") if isinstance(value, dict) else isinstance(value, HFModel)) else "tiny"


def _one_model_kind(value: Any) -> Any:
    """``model.path`` (your model) and the tiny model's shape keys (``model.kind``, ...) are exclusive."""
    if isinstance(value, dict) and "path" in value:
        tiny = sorted(set(value) & {f.name for f in dataclasses.fields(TinyModelSpec)})
        if tiny:
            raise ValueError(
                f"model.path names your own model, so the built-in tiny model's {', '.join('model.' + k for k in tiny)}"
                " does not apply: drop it (or drop model.path to train the tiny model)"
            )
    return value


def _task_kind(value: Any) -> str:
    """'data' for the user's task (any of TaskData's keys), else 'builtin' (the arithmetic task's spec)."""
    if isinstance(value, dict):
        return "data" if set(value) & set(TaskData.model_fields) else "builtin"
    return "data" if isinstance(value, TaskData) else "builtin"


def _one_task_kind(value: Any) -> Any:
    """Your data (``task.rl_train``, ...) and the built-in task's spec (``task.difficulty``, ...) are exclusive."""
    if isinstance(value, dict) and _task_kind(value) == "data":
        builtin = sorted(set(value) & {f.name for f in dataclasses.fields(TaskSpec)})
        if builtin:
            raise ValueError(
                f"task.{', task.'.join(builtin)} set the built-in task, which your data (task.rl_train, ...) replaces:"
                " drop them (a shipped config sets them: start from your own --config)"
            )
    return value


ModelParam = Annotated[
    Annotated[TinyModelSpec, Tag("tiny")] | Annotated[HFModel, Tag("hf")],
    Discriminator(_model_kind),
    BeforeValidator(_one_model_kind),
]
"""The base model: the built-in tiny model (default; ``model.kind``, ``model.num_layers``, ...) or your own
(``model.path``: a local folder, ``s3://`` prefix or hub id, with ``revision``, ``trust_remote_code``,
``chat_template``)."""


Task = Annotated[
    Annotated[TaskSpec, Tag("builtin")] | Annotated[TaskData, Tag("data")],
    Discriminator(_task_kind),
    BeforeValidator(_one_task_kind),
]
"""The task: the built-in arithmetic task (default; ``task.difficulty``, ...) or your data and reward
(``task.rl_train``, ``task.sft``, ``task.benchmarks``, ``task.reward``: :class:`~.user_task.TaskData`)."""


def _check_inits(task: TaskSpec | TaskData, names: list[str], what: str) -> None:
    """Every SFT init named is one the task has data for (the built-in teacher styles, or the user's inits)."""
    for name in names:
        if isinstance(task, TaskSpec):
            get_teacher(name)  # ValueError naming the available styles
        elif name not in task.sft:
            available = ", ".join(task.sft) or "none: task.sft is empty"
            raise ValueError(f"{what} {name!r} is not an SFT init of the task; task.sft has: {available}")


def _check_benchmarks(task: TaskSpec | TaskData, eval_params: EvalParams) -> None:
    known = benchmark_names(task)
    value = eval_params.benchmark_list(task)
    unknown = [b for b in value if b not in known]
    if unknown or not value:
        raise ValueError(f"no such benchmark dataset {unknown or value}; available: {', '.join(known) or 'none'}")


def _check_reward(task: TaskSpec | TaskData, rl: RLStage) -> None:
    if isinstance(task, TaskData) and rl.format_bonus:
        raise ValueError(
            "rl.format_bonus shapes the built-in task's reward; give your reward's own kwargs in task.reward.kwargs"
        )


class _StageParams(_Model):
    """What every stage needs: the store, a local scratch folder, and the inputs it builds locally."""

    store: StoreParams = Field(default_factory=StoreParams)
    launcher: LauncherParams = Field(default_factory=LauncherParams)
    """How verl stages run (local subprocess, or a Ray Job on an existing cluster)."""
    workdir: str = "artifacts/work"
    """Local scratch: built assets, checkpoints being written or read, logs. Not the system of record."""
    seed: int = 0
    """Seed of the base model's weights and the task splits."""
    model: ModelParam = Field(default_factory=TinyModelSpec)
    """The built-in tiny model (default) or your own (``model.path``)."""
    task: Task = Field(default_factory=TaskSpec)
    """The built-in arithmetic task (default) or your own data and reward (``task.rl_train``, ...)."""
    logging: Logging = Field(default_factory=Logging)
    """Trackers (wandb, mlflow, tensorboard, ...) verl also logs to; never part of a run id, credentials from the
    environment only."""

    def _common(self) -> dict:
        """The shared fields, for the per-stage parameters a multi-stage flow derives."""
        return {k: getattr(self, k) for k in ("store", "launcher", "workdir", "seed", "model", "task", "logging")}


def _check_saves(rl: RLStage) -> RLStage:
    if rl.save_freq <= 0:
        raise ValueError("rl.save_freq must be > 0: checkpoints are the stage's output and its resume points")
    return rl


def _save_every_step_by_default(value: object) -> object:
    return {**value, "save_freq": value.get("save_freq", 1)} if isinstance(value, dict) else value


def _check_routers(model: TinyModelSpec | HFModel, rl: RLStage) -> None:
    """Routing replay needs routers: refuse a dense tiny model with an R2/R3 recipe before anything runs (your own
    model's config.json is read by the preflight, :mod:`.preflight`)."""
    replay = rl.recipe_config.routing_replay
    if isinstance(model, TinyModelSpec) and model.kind != "moe" and replay != "disabled":
        raise ValueError(
            f"rl.recipe {rl.recipe!r} replays expert routes ({replay}) but model.kind={model.kind!r} has no routers; "
            "use model.kind=moe or a recipe without routing replay"
        )


CheckpointedRL = Annotated[RLStage, BeforeValidator(_save_every_step_by_default), AfterValidator(_check_saves)]
"""An RL stage that saves checkpoints (every step unless set): what later stages evaluate and resumes start from."""


class SFTFlowParams(_StageParams):
    """verl SFT of the base model on one teacher's solutions."""

    sft: SFTStage = Field(default_factory=SFTStage)
    sft_seed: int = 0
    """Seed of verl's SFT trainer (data order)."""

    @model_validator(mode="after")
    def _init(self) -> Self:
        _check_inits(self.task, [self.sft.teacher], "sft.teacher")
        return self


class RLFlowParams(_StageParams):
    """verl RL (main_ppo, vLLM rollouts) from an SFT run's checkpoint (or the base model)."""

    rl: CheckpointedRL = Field(default_factory=lambda: RLStage(save_freq=1))
    init_run: str | None = None
    """SFT run id whose latest complete checkpoint initialises the policy (None: the base model)."""
    rl_seed: int = 0
    """Seed of the data order and of vLLM sampling."""

    @model_validator(mode="after")
    def _routers(self) -> Self:
        _check_routers(self.model, self.rl)
        _check_nodes(self.launcher, self.rl)
        _check_reward(self.task, self.rl)
        return self


def _check_nodes(launcher: LauncherParams, rl: RLStage) -> None:
    if rl.nnodes > 1 and not launcher.on_cluster:
        raise ValueError(f"rl.nnodes={rl.nnodes} needs a Ray cluster: set launcher.kind=ray_job (and its address)")


class EvaluateFlowParams(_Model):
    """Evaluate checkpoints of runs already in the store."""

    store: StoreParams = Field(default_factory=StoreParams)
    workdir: str = "artifacts/work"
    """Local scratch (downloaded checkpoints, benchmark files, eval outputs)."""
    task: Task = Field(default_factory=TaskSpec)
    """The task whose benchmarks and reward score the checkpoints (the built-in one, or your data)."""
    runs: list[str] = Field(default_factory=list)
    """Run ids (``sft-...``/``rl-...``) to evaluate."""
    select: RunSelector | None = None
    """Runs picked from the store as well (``{}``: every complete checkpoint with no evaluation yet)."""
    eval: EvalParams = Field(default_factory=EvalParams)
    launcher: LauncherParams = Field(default_factory=LauncherParams)
    """Where the evaluation runs: here (default), or as a Ray Job on a cluster's GPU node that fetches the
    checkpoints' HF folders from the store and writes the results there (``launcher.kind=ray_job``)."""

    @model_validator(mode="after")
    def _benchmarks(self) -> Self:
        _check_benchmarks(self.task, self.eval)
        return self

    @model_validator(mode="after")
    def _runs_or_selector(self) -> Self:
        if not self.runs and self.select is None:
            raise ValueError(
                "nothing to evaluate: give runs (run ids) or select ({} = every checkpoint not yet evaluated)"
            )
        return self


@dataclasses.dataclass(frozen=True)
class InitCheckpoint:
    """An already-trained SFT checkpoint (a Hugging Face folder with ``config.json`` and safetensors weights)."""

    path: str
    """A local folder, an ``s3://bucket/prefix`` folder with its ``_MANIFEST.json``, or a hub id ``org/name``."""
    revision: str | None = None
    """Hub ids only: a branch, tag or commit (default: main), resolved once to its commit."""

    def model_source(self) -> str:
        """'local', 's3' or 'hub', as for ``model.path`` (:attr:`HFModel.source`)."""
        return HFModel(self.path or "-").source

    def model(self) -> HFModel:
        """The folder as :mod:`stable_verl.train.model_source` resolves and fingerprints a user's model."""
        return HFModel(self.path, self.revision)


def _path_alone(value: Any) -> Any:
    """``init_checkpoints.<name>: /path`` is ``{path: /path}``."""
    return {"path": value} if isinstance(value, str) else value


def _hf_folder(value: InitCheckpoint) -> InitCheckpoint:
    """A path is given; a revision only with a hub id (the folder itself is read by the preflight)."""
    if not value.path.strip():
        raise ValueError("empty path: give a local folder, s3://bucket/prefix or a hub id org/name")
    if value.revision is not None and value.model_source() != "hub":
        raise ValueError(f"revision applies to hub ids (org/name), and {value.path} is not one")
    return value


CheckpointParam = Annotated[InitCheckpoint, BeforeValidator(_path_alone), AfterValidator(_hf_folder)]
"""An already-trained SFT checkpoint: a local folder, ``s3://`` prefix or hub id, given alone or as
``{path, revision}``."""


class ColdstartParams(_StageParams):
    """Cold-start comparison: SFT on each teacher style (x seeds) -> the same RL recipe -> eval -> report."""

    name: str = "coldstart"
    """Comparison name; the report goes to comparisons/<name>-<hash of its runs>/."""
    teachers: list[str] = Field(default_factory=lambda: list(TEACHERS))
    """Cold-start initialisations: teacher styles of the SFT data, or the init names of your ``task.sft`` (default:
    every init the task has)."""
    seeds: list[int] = Field(default_factory=lambda: [0])
    """SFT + RL seeds per teacher; several give the spread across seeds."""
    sft: SFTStage = Field(default_factory=SFTStage)
    """SFT settings shared by every init (``sft.teacher`` is set per init)."""
    rl: CheckpointedRL = Field(default_factory=lambda: RLStage(save_freq=1))
    """The RL recipe every init is trained with."""
    eval: EvalParams = Field(default_factory=EvalParams)
    init_checkpoints: dict[str, CheckpointParam] = Field(default_factory=dict)
    """Inits that are already-trained SFT checkpoints, by name (SFT skipped): a Hugging Face folder given as a local
    path, an ``s3://`` prefix with its manifest, or a hub id (``{path: org/name, revision: v1}``). Each is imported
    once into the store as a complete SFT run and trained with the same RL recipe as the ``teachers``' inits."""

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, value: list) -> list:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"must be distinct and non-empty, got {value}")
        return value

    @field_validator("teachers")
    @classmethod
    def _distinct_teachers(cls, value: list) -> list:
        if len(set(value)) != len(value):
            raise ValueError(f"must be distinct, got {value}")
        return value

    @model_validator(mode="after")
    def _routers(self) -> Self:
        if "teachers" not in self.model_fields_set:
            # every init of the user's task, or the built-in styles (none beside checkpoint inits: those alone)
            builtin_beside = isinstance(self.task, TaskSpec) and self.init_checkpoints
            self.teachers = [] if builtin_beside else init_names(self.task)
        if not self.teachers and not self.init_checkpoints:
            raise ValueError(
                "no init to compare: a cold start needs SFT data per init (task.sft.<name>.train, named in teachers) "
                "or already-trained checkpoints (init_checkpoints.<name>)"
            )
        clash = sorted(set(self.teachers) & set(self.init_checkpoints))
        if clash:
            raise ValueError(f"init name(s) {clash} are both a teacher and an init_checkpoints entry: rename one")
        _check_inits(self.task, self.teachers, "teacher")
        _check_benchmarks(self.task, self.eval)
        _check_routers(self.model, self.rl)
        _check_nodes(self.launcher, self.rl)
        _check_reward(self.task, self.rl)
        return self

    def sft_params(self, teacher: str, seed: int) -> SFTFlowParams:
        return SFTFlowParams(**self._common(), sft=dataclasses.replace(self.sft, teacher=teacher), sft_seed=seed)

    def sft_pairs(self) -> list[tuple[str, int]]:
        """(teacher, seed) of the inits trained here by SFT, in run order: an input of the comparison's stage graph
        (:func:`stable_verl.train.experiment.coldstart_graph`), which the flow runs and the plan prints."""
        return [(teacher, seed) for teacher in self.teachers for seed in self.seeds]

    def init_pairs(self) -> list[tuple[str, int]]:
        """(init name, seed) of the checkpoint inits, in run order (after the teachers')."""
        return [(name, seed) for name in self.init_checkpoints for seed in self.seeds]

    def rl_params(self, init_run: str, seed: int) -> RLFlowParams:
        return RLFlowParams(**self._common(), rl=self.rl, init_run=init_run, rl_seed=seed)

    def evaluate_params(self, runs: list[str]) -> EvaluateFlowParams:
        return EvaluateFlowParams(
            store=self.store, workdir=self.workdir, task=self.task, runs=runs, eval=self.eval, launcher=self.launcher
        )


GRID_MINIBATCHES = (1, 2, 4, 8)  # the paper's N: mini-batches per rollout batch at the same global batch


class StabilityGridParams(_StageParams):
    """The stability grid (paper §5, notes §6.2): arms x N x seeds of RL from one SFT init, eval, claims report."""

    name: str = "stability-grid"
    """Comparison name; the report goes to comparisons/<name>-<hash of its runs>/."""
    init_run: str | None = None
    """SFT run id every cell starts from; None: the flow builds it with the ``sft`` settings (skipped if done)."""
    sft: SFTStage = Field(default_factory=SFTStage)
    """SFT of the init when ``init_run`` is None."""
    arms: list[str] = Field(default_factory=lambda: ["minirl"])
    """Recipes (configs/recipes/) run at every N of ``minibatches``; the grid sets each cell's N."""
    arms_by_n: dict[int, list[str]] = Field(default_factory=dict)
    """Per-N arm lists replacing ``arms`` at that N (the paper runs other arms on- and off-policy)."""
    minibatches: list[int] = Field(default_factory=lambda: [1, 2])
    """N values (1, 2, 4, 8): passed to each arm as the recipe override ``minibatches=N``."""
    seeds: list[int] = Field(default_factory=lambda: [0])
    """RL seeds per (arm, N); the claims need >= 2."""
    rl: CheckpointedRL = Field(default_factory=lambda: RLStage(save_freq=1, rollout_precision="fp8"))
    """The one regime every arm shares (``rl.recipe`` is set per cell; ``rollout_precision`` fp8: the paper's
    stress). ``total_steps`` is the grid's step count."""
    eval: EvalParams = Field(default_factory=lambda: EvalParams(steps="all"))
    """Checkpoint evaluation; ``eval.steps`` is the list of steps to score (every k steps), or all / last."""

    @field_validator("rl", mode="before")
    @classmethod
    def _fp8_by_default(cls, value: object) -> object:
        """The grid's stress is fp8 rollouts unless the config names another precision."""
        return {"rollout_precision": "fp8", **value} if isinstance(value, dict) else value

    @field_validator("minibatches", "seeds")
    @classmethod
    def _distinct_ints(cls, value: list[int]) -> list[int]:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"must be distinct and non-empty, got {value}")
        return value

    @field_validator("minibatches")
    @classmethod
    def _paper_n(cls, value: list[int]) -> list[int]:
        bad = [n for n in value if n not in GRID_MINIBATCHES]
        if bad:
            raise ValueError(f"N must be one of {list(GRID_MINIBATCHES)}, got {bad}")
        return value

    @model_validator(mode="after")
    def _cells_compile(self) -> Self:
        """Every cell's recipe loads and its N divides the batch; R2 needs N >= 2 (it is a no-op on-policy)."""
        if self.init_run is None:
            _check_inits(self.task, [self.sft.teacher], "sft.teacher")
        _check_benchmarks(self.task, self.eval)
        _check_reward(self.task, self.rl)
        if self.rl.recipe_overrides and any(o.startswith("minibatches=") for o in self.rl.recipe_overrides):
            raise ValueError("rl.recipe_overrides must not set minibatches: the grid sets N per cell (minibatches)")
        extra = sorted(set(self.arms_by_n) - set(self.minibatches))
        if extra:
            raise ValueError(f"arms_by_n names N={extra}, which minibatches {self.minibatches} does not run")
        for n in self.minibatches:
            arms = self.arms_at(n)
            if not arms or len(set(arms)) != len(arms):
                raise ValueError(f"the arms at N={n} must be distinct and non-empty, got {arms}")
            if self.rl.train_batch_size % n:
                raise ValueError(
                    f"N={n} does not divide rl.train_batch_size={self.rl.train_batch_size}: pick N in "
                    f"{[d for d in GRID_MINIBATCHES if self.rl.train_batch_size % d == 0]} or another batch size"
                )
            for arm in arms:
                recipe = self.cell_rl(GridCell(arm, n, self.seeds[0])).recipe_config  # ValueError: unknown recipe
                if recipe.routing_replay == "R2" and n == 1:
                    raise ValueError(f"arm {arm} replays R2 routes, a no-op at N=1: drop it from the N=1 arms")
        return self

    def arms_at(self, n: int) -> list[str]:
        return self.arms_by_n.get(n, self.arms)

    def cells(self) -> list[GridCell]:
        """Run order: N, then arm, then seed (a partial grid holds whole regimes first)."""
        return [GridCell(arm, n, seed) for n in self.minibatches for arm in self.arms_at(n) for seed in self.seeds]

    def cell_rl(self, cell: GridCell) -> RLStage:
        overrides = [*self.rl.recipe_overrides, f"minibatches={cell.n}"]
        return dataclasses.replace(self.rl, recipe=cell.arm, recipe_overrides=overrides)

    def sft_params(self) -> SFTFlowParams:
        return SFTFlowParams(**self._common(), sft=self.sft, sft_seed=self.seed)

    def rl_params(self, cell: GridCell, init_run: str) -> RLFlowParams:
        return RLFlowParams(**self._common(), rl=self.cell_rl(cell), init_run=init_run, rl_seed=cell.seed)

    def evaluate_params(self, runs: list[str]) -> EvaluateFlowParams:
        return EvaluateFlowParams(
            store=self.store, workdir=self.workdir, task=self.task, runs=runs, eval=self.eval, launcher=self.launcher
        )
