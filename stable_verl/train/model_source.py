"""A stage's base model: its identity (what run ids hash) and the local folder verl reads.

The built-in tiny model (:class:`~stable_verl.models.tiny.TinyModelSpec`) is built from its spec by :mod:`.assets`;
its identity is the spec itself, as it always was. A user's model (:class:`~stable_verl.models.hf.HFModel`) is
resolved here:

* a local folder is used as it is;
* a hub id through huggingface_hub's own resolution and cache (``snapshot_download``; offline, from the cache only,
  when ``HF_HUB_OFFLINE`` is set);
* an ``s3://`` prefix is a manifested folder (its ``_MANIFEST.json``), downloaded once into
  ``workdir/models/<key>`` with every file's size and sha256 checked against the manifest.

Its identity is ``{path, revision: <commit>}`` for a hub id (the commit pins the files) and ``{path, fingerprint}``
otherwise: a hash of each file's name and size plus the bytes of the small files that define the model
(``config.json``, safetensors index, tokenizer config, chat template) -- stat calls and a few small reads, never the
weights. A chat template given in the parameters adds its hash.

A verl checkpoint's HF folder (:func:`ensure_hf_model`, for the RL init and for evaluation) is merged from its FSDP
shards with ``verl.model_merger`` when the checkpoint has no HF weights. verl's merger always writes bf16, so
stable-verl's RL stages save HF weights with the checkpoint (``save_contents`` has ``hf_model``) and the merge is
only the fallback for checkpoints made without them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from stable_verl.artifacts import MANIFEST_NAME, ArtifactStore, config_hash, sha256_file
from stable_verl.launch.runner import python_module, run_streaming
from stable_verl.launch.stall import DEFAULT_STALL_S
from stable_verl.models.hf import HFModel
from stable_verl.models.spec import TinyModelSpec

# Files read whole into the fingerprint (small; they define the architecture, the tokenizer and the template).
_DEFINING = ("config.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json")
_COMMIT = re.compile(r"[0-9a-f]{40}")
_IGNORED = (MANIFEST_NAME, ".stable-verl-input.json")  # the store's manifest; a node's materialisation mark


def model_identity(model: TinyModelSpec | HFModel, endpoint_url: str | None = None) -> TinyModelSpec | dict:
    """What run ids hash for ``model``: the tiny spec as it is (existing ids unchanged), or a user model's identity."""
    if isinstance(model, TinyModelSpec):
        return model
    ident: dict = {"path": model.path}
    if model.source == "hub":
        ident["revision"] = hub_commit(model)
    else:
        ident["fingerprint"] = fingerprint(model, endpoint_url)
    template = model.chat_template_text()
    if template is not None:
        ident["chat_template"] = hashlib.sha256(template.encode()).hexdigest()[:16]
    return ident


def model_key(model: HFModel, endpoint_url: str | None = None) -> str:
    """A short content address of the model's files (their folder name under ``workdir/models`` and
    ``inputs/models`` in the store)."""
    ident = model_identity(model, endpoint_url)
    return config_hash({k: v for k, v in ident.items() if k != "chat_template"}, length=16)


def _fingerprint(sizes: dict[str, int], sha256: Callable[[str], str]) -> str:
    """Names and sizes of the files, sha256 of the defining ones: equal for a local folder and its S3 copy."""
    files = {rel: size for rel, size in sorted(sizes.items()) if not _ignored(rel)}
    defining = {rel: sha256(rel) for rel in files if _defines(rel)}
    blob = json.dumps({"files": files, "defining": defining}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _ignored(rel: str) -> bool:
    return rel in _IGNORED or any(part.startswith(".") for part in rel.split("/"))


def _defines(rel: str) -> bool:
    return rel in _DEFINING or rel.endswith(".safetensors.index.json")


def fingerprint(model: HFModel, endpoint_url: str | None = None) -> str:
    """The fingerprint of a local or ``s3://`` model folder (see the module docstring); ValueError if there is none."""
    if model.source == "s3":
        store, manifest = _s3_manifest(model, endpoint_url)
        sha = {e.path: e.sha256 for e in manifest.files}
        return _fingerprint({e.path: e.size for e in manifest.files}, sha.__getitem__)
    root = local_folder(model)
    sizes = {p.relative_to(root).as_posix(): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}
    return _fingerprint(sizes, lambda rel: sha256_file(root / rel))


def local_folder(model: HFModel) -> Path:
    """A local model's folder, checked to hold ``config.json``; ValueError naming what is missing."""
    root = Path(model.path).expanduser().resolve()
    if not root.is_dir():
        raise ValueError(f"model.path {model.path}: no such folder (a local model folder, s3://... or a hub org/name)")
    if not (root / "config.json").is_file():
        raise ValueError(f"model.path {model.path}: no config.json in it (not a Hugging Face model folder)")
    return root


def _s3_manifest(model: HFModel, endpoint_url: str | None):
    store = ArtifactStore.from_env(model.path, endpoint_url=endpoint_url)
    manifest = store.read_manifest("")
    if manifest is None:
        raise ValueError(
            f"model.path {model.path}: no valid {MANIFEST_NAME} (an s3:// model is a folder uploaded with its "
            "manifest, e.g. ArtifactStore.put_dir, so every node can check what it downloads)"
        )
    if manifest.entry("config.json") is None:
        raise ValueError(f"model.path {model.path}: no config.json in it (not a Hugging Face model folder)")
    return store, manifest


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def _hub_cache() -> str:
    """The hub cache huggingface_hub would use, read from the environment now (its constants are read at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return os.path.join(os.path.expanduser(home), "hub")


def hub_commit(model: HFModel) -> str:
    """The commit ``model.revision`` (default main) of the hub id names: asked of the Hub, or read from the local
    cache when offline (``HF_HUB_OFFLINE``). ValueError when neither knows it."""
    revision = model.revision or "main"
    if _COMMIT.fullmatch(revision):
        return revision
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    if not _offline():
        from huggingface_hub import HfApi

        try:
            return HfApi().model_info(model.path, revision=revision).sha
        except Exception as e:  # an HTTP error, or no network (httpx's errors are not OSErrors)
            reason = str(e).splitlines()[0] if isinstance(e, HfHubHTTPError) else type(e).__name__
            raise ValueError(
                f"model.path {model.path}@{revision}: the Hub does not resolve it ({reason}); "
                "set HF_HUB_OFFLINE=1 to use the local cache"
            ) from None
    try:
        folder = snapshot_download(model.path, revision=revision, cache_dir=_hub_cache(), local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise ValueError(
            f"model.path {model.path}@{revision}: HF_HUB_OFFLINE is set and the Hugging Face cache "
            f"({_hub_cache()}) has no snapshot of it: download it first (huggingface-cli download {model.path})"
        ) from None
    return Path(folder).name


def planned_model_dir(model: HFModel, workdir: Path, endpoint_url: str | None = None) -> Path:
    """Where :func:`resolve_model_dir` puts (or finds) the model's folder, without downloading anything."""
    if model.source == "local":
        return local_folder(model)
    if model.source == "hub":
        repo = "models--" + model.path.replace("/", "--")
        return Path(_hub_cache()) / repo / "snapshots" / hub_commit(model)
    return _s3_local(model, workdir, endpoint_url)[0]


def _s3_local(model: HFModel, workdir: Path, endpoint_url: str | None):
    """(local folder, node dir, input) of an ``s3://`` model: ``materialise`` puts it in ``<node dir>/store``."""
    from stable_verl.verl_ext.inputs import StoreInput

    node_dir, inp = workdir / "models" / model_key(model, endpoint_url), StoreInput("")
    return node_dir / inp.node_rel, node_dir, inp


def resolve_model_dir(model: HFModel, workdir: Path, endpoint_url: str | None = None) -> Path:
    """The model's folder on this machine: a local one as it is, a hub snapshot (downloaded unless cached), an
    ``s3://`` folder downloaded once into ``workdir/models/<key>`` (every file checked against its manifest)."""
    if model.source == "local":
        return local_folder(model)
    if model.source == "hub":
        from huggingface_hub import snapshot_download

        commit = hub_commit(model)
        return Path(snapshot_download(model.path, revision=commit, cache_dir=_hub_cache(), local_files_only=_offline()))
    from stable_verl.verl_ext.inputs import materialise

    store, _ = _s3_manifest(model, endpoint_url)
    _, node_dir, inp = _s3_local(model, workdir, endpoint_url)
    return materialise(store, inp, node_dir)


def store_prefix(model: HFModel, store: ArtifactStore) -> str | None:
    """The prefix of an ``s3://`` model inside ``store`` (nodes materialise it from there, nothing is copied), or
    None for a model elsewhere."""
    root = store.uri().rstrip("/") + "/"
    path = model.path.rstrip("/")
    return path[len(root) :] if model.source == "s3" and path.startswith(root) else None


def model_config(model: HFModel, endpoint_url: str | None = None) -> dict:
    """The model's ``config.json``, read without fetching its weights; ValueError naming what is missing."""
    if model.source == "local":
        return json.loads((local_folder(model) / "config.json").read_text())
    if model.source == "s3":
        store, _ = _s3_manifest(model, endpoint_url)
        return json.loads(store.read_bytes("config.json"))
    from huggingface_hub import hf_hub_download

    commit = hub_commit(model)
    try:
        path = hf_hub_download(
            model.path, "config.json", revision=commit, cache_dir=_hub_cache(), local_files_only=_offline()
        )
    except Exception as e:
        raise ValueError(f"model.path {model.path}@{commit[:12]}: no config.json ({type(e).__name__})") from None
    return json.loads(Path(path).read_text())


def ensure_hf_model(checkpoint_dir: Path) -> Path:
    """The HF directory of a verl checkpoint (``global_step_N``), merging FSDP shards if needed (the merge fails when
    it stalls, :mod:`~.launch.stall`; no total limit)."""
    from stable_verl.config import cpu_env  # imports torch: only when a merge may run (the preflight stays free of it)

    for candidate in (checkpoint_dir / "actor" / "huggingface", checkpoint_dir / "huggingface", checkpoint_dir):
        if (candidate / "config.json").exists() and any(candidate.glob("*.safetensors")):
            return candidate
    actor = checkpoint_dir / "actor" if (checkpoint_dir / "actor").exists() else checkpoint_dir
    target = checkpoint_dir / "merged_hf"
    argv = python_module(
        "verl.model_merger", "merge", "--backend", "fsdp", "--local_dir", str(actor), "--target_dir", str(target)
    )
    run_streaming(
        argv, checkpoint_dir / "merge.log", cpu_env.verl_env(), name="verl model_merger", stall_s=DEFAULT_STALL_S
    )
    return target
