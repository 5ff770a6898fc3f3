"""Bad input that the parameters alone cannot see, found before a flow starts (no Prefect server, no stage).

The parameter models reject unknown keys, wrong types and impossible settings; this checks what needs the world:
the store answers and takes writes, the local scratch folder can be written, a Ray cluster's Jobs API answers (for
``launcher.kind=ray_job``), the runs a flow starts from or evaluates are complete in the store, a user's model
(``model.path``) has a ``config.json`` that the flow's recipes accept (routing replay needs a supported MoE family;
that one file is read, never the weights), as has each already-trained init (``init_checkpoints``, with safetensors
weights), and a user task's (:class:`~.user_task.TaskData`) files exist and have
verl's columns and its reward imports and scores the first RL prompt, and no ``rl.overrides`` asks vLLM-CPU for
batch-invariant MoE kernels it lacks (``rollout.full_determinism``). Each failure is one :class:`InputError` line
(the CLI exits 2 on it).
"""

from __future__ import annotations

import json
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from stable_verl.artifacts import ArtifactStore, ArtifactStoreError, RunLayout
from stable_verl.artifacts.run_record import RunRecord
from stable_verl.config.cpu_env import on_cpu
from stable_verl.models.hf import HFModel
from stable_verl.tasks.reward_fn import load_reward, score_one
from stable_verl.tasks.user_task import TaskData, normalised_splits
from stable_verl.train.checkpoint_import import check_weights, source_config
from stable_verl.train.model_source import model_config


class InputError(ValueError):
    """A flow's input is unusable; found before anything ran."""


def check_inputs(params: Any) -> None:
    """Raise :class:`InputError` unless ``params``' store, workdir and input runs are usable. Writes nothing that
    stays: the store check writes, reads back and deletes one probe object."""
    store = params.store.open()
    try:
        store.check()
    except ArtifactStoreError as e:
        raise InputError(str(e)) from e
    _check_writable(Path(params.workdir))
    launcher = getattr(params, "launcher", None)
    if launcher is not None and launcher.on_cluster:
        check_jobs_api(launcher.ray_address)
    for run_id, what in _input_runs(params):
        _check_complete(store, run_id, what)
    _check_model(params)
    _check_init_checkpoints(params)
    _check_full_determinism(params)
    task = getattr(params, "task", None)
    if isinstance(task, TaskData):
        check_task(task)


def _check_model(params: Any) -> None:
    """A user's model: its config.json is readable (local folder, s3:// folder or hub cache) and every recipe the
    flow runs can train its family."""
    model = getattr(params, "model", None)
    if not isinstance(model, HFModel):
        return  # the tiny model: checked by the parameters (model.kind)
    try:
        config = model_config(model, params.store.endpoint_url)
        for recipe in _recipes(params):
            recipe.check_model_type(config.get("model_type"), model.path)
    except (ValueError, ArtifactStoreError, OSError) as e:
        raise InputError(str(e).splitlines()[0]) from e


def _check_init_checkpoints(params: Any) -> None:
    """Each already-trained init (``init_checkpoints``): a Hugging Face folder with safetensors weights whose family
    every recipe the flow runs can train."""
    for name, checkpoint in (getattr(params, "init_checkpoints", None) or {}).items():
        try:
            config = source_config(name, checkpoint, params.store.endpoint_url)
            for recipe in _recipes(params):
                recipe.check_model_type(config.get("model_type"), f"init_checkpoints.{name} ({checkpoint.path})")
            check_weights(name, checkpoint, params.store.endpoint_url)
        except (ValueError, ArtifactStoreError, OSError) as e:
            raise InputError(str(e).splitlines()[0]) from e


def _rl_stages(params: Any) -> list[Any]:
    """The RL stages a flow runs: each grid cell's, else its one ``rl`` stage (none for SFT)."""
    if hasattr(params, "cells"):
        return [params.cell_rl(cell) for cell in params.cells()]
    rl = getattr(params, "rl", None)
    return [rl] if rl is not None else []


def _recipes(params: Any) -> list[Any]:
    """The RL recipes a flow runs."""
    return [rl.recipe_config for rl in _rl_stages(params)]


FULL_DETERMINISM = "actor_rollout_ref.rollout.full_determinism"


def _check_full_determinism(params: Any) -> None:
    """verl's ``rollout.full_determinism`` sets ``VLLM_BATCH_INVARIANT=1``, and vLLM-CPU's one MoE backend is not
    batch-invariant: the engine fails at start, minutes in (measured: docs/results/stress-phase1.md). Refused for a
    MoE model on CPU."""
    overrides = [o.lstrip("+~").partition("=") for rl in _rl_stages(params) for o in rl.overrides]
    if not any(key == FULL_DETERMINISM and value.strip().lower() in ("true", "1") for key, _, value in overrides):
        return
    launcher = getattr(params, "launcher", None)
    cpu = launcher.cpu if launcher is not None else None
    if not (on_cpu() if cpu is None else cpu):
        return
    model = getattr(params, "model", None)
    if isinstance(model, HFModel):
        from stable_verl.core.routing.families import config_is_moe

        moe = config_is_moe(model_config(model, params.store.endpoint_url))
    else:
        moe = getattr(model, "kind", None) == "moe"
    if moe:
        raise InputError(
            f"rl.overrides sets {FULL_DETERMINISM}=true, which turns on vLLM's batch-invariant kernels, and vLLM on "
            "CPU has none for a MoE model (its engine would fail to start): drop the override, or run on GPUs"
        )


def check_task(task: TaskData) -> None:
    """Every file of ``task`` reads and has verl's columns (normalised in memory: nothing is written), and its reward
    imports and returns a number, or a dict with ``score``, on the first RL prompt (its ground truth as response)."""
    try:
        splits = normalised_splits(task)
        fn = load_reward(task.reward)
    except (ValueError, OSError, ImportError) as e:
        raise InputError(_one_line(e)) from e
    row = splits["rl_train"][0]
    truth = row["reward_model"]["ground_truth"]
    try:
        score_one(fn, task.reward.kwargs, row["data_source"], str(truth), truth, row["extra_info"])
    except Exception as e:  # the user's code: any failure is bad input
        where = "verl's default_compute_score" if task.reward.path is None else f"{task.reward.path}:{task.reward.name}"
        raise InputError(f"reward {where} failed on the first rl_train row: {_one_line(e)}") from e


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if isinstance(e, ValueError) else f"{type(e).__name__}: {text}"


def _input_runs(params: Any) -> list[tuple[str, str]]:
    runs = [(params.init_run, "init run")] if getattr(params, "init_run", None) else []
    return runs + [(run_id, "run") for run_id in getattr(params, "runs", None) or []]


def _check_writable(workdir: Path) -> None:
    """``workdir`` exists as a writable folder, or could be created in its nearest existing parent: a file is created
    and removed there (``os.access`` says yes to root for a folder such as /proc, which takes no files)."""
    existing = workdir.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"workdir {workdir}: {existing} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".stable-verl-probe-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"workdir {workdir}: cannot create a file in {existing} ({e.strerror or e})") from None


JOBS_API_TIMEOUT_S = 5.0


def check_jobs_api(address: str | None, timeout_s: float = JOBS_API_TIMEOUT_S) -> None:
    """The Ray Jobs API at ``address`` (else ``$RAY_ADDRESS``) answers and lets us list jobs, within seconds.

    Its version endpoint is asked first with a short timeout (an address with nothing behind it fails here), then
    Ray's own client lists the jobs, as the launcher will, with the headers and credentials Ray reads itself."""
    from stable_verl.launch.ray_job import resolve_address

    try:
        url = resolve_address(address).rstrip("/")
    except ValueError as e:
        raise InputError(str(e)) from None
    where = f"launcher.ray_address {url}"
    if "://" not in url:
        url = f"http://{url}"  # as Ray's client reads <head>:8265
    if not url.startswith(("http://", "https://")):
        raise InputError(f"{where}: the Jobs API address is http(s)://<head>:8265")
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=timeout_s) as response:
            json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as e:
        if e.code not in (401, 403):  # an authenticating proxy: Ray's client below sends the credentials
            raise InputError(f"{where}: not a Ray Jobs API (HTTP {e.code} from /api/version)") from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise InputError(
            f"{where}: no Ray Jobs API answers there ({reason}); start the cluster or fix the address"
        ) from None
    try:
        from ray.job_submission import JobSubmissionClient

        JobSubmissionClient(url).list_jobs()
    except Exception as e:  # Ray raises plain RuntimeError/ConnectionError for auth and HTTP trouble
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"{where}: the Jobs API refused to list jobs ({first[:200]})") from None


def _check_complete(store: ArtifactStore, run_id: str, what: str) -> None:
    try:
        record = RunRecord.read(RunLayout(store, run_id))
    except ValueError as e:  # not a valid run id
        raise InputError(f"{what} {run_id!r}: {e}") from e
    if record is None or not record.complete:
        state = "does not exist" if record is None else f"is {record.status!r}, not complete"
        raise InputError(f"{what} {run_id} {state} in {store.uri()}")
