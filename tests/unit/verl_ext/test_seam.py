"""The verl / vLLM seam (:mod:`stable_verl.verl_ext.seam`): every entry still matches upstream, every override our
subclasses make is listed, and a changed upstream symbol is named."""

from __future__ import annotations

import inspect
import sys

import pytest

from stable_verl.verl_ext import seam
from tests.support import progress


def test_every_seam_entry_matches_the_installed_verl_vllm_and_transformers():
    """In a fresh interpreter (no runtime patch of ours installed yet), every upstream symbol resolves with the call
    shape, statement and body hash it was written against."""
    done = progress.run([sys.executable, "-m", "stable_verl.verl_ext.seam", "--check"])
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert done.stdout.strip() == f"all {len(seam.SEAMS)} seam entries match"


def test_every_override_of_our_verl_subclasses_is_in_the_seam():
    """A new override of a verl method (public or private) without a seam entry fails here, naming it."""
    from stable_verl.verl_ext.actor_worker import RoutingActorRolloutRefWorker
    from stable_verl.verl_ext.routing_engine import RoutingReplayFSDPEngine
    from stable_verl.verl_ext.sft_dataset import CachedMultiTurnSFTDataset
    from stable_verl.verl_ext.trainer import StableTrainerSync

    trainer_pieces = [c for c in StableTrainerSync.__mro__ if c.__module__.startswith("stable_verl.")]
    assert len(trainer_pieces) > 1  # the class and its per-concern bases, each checked on its own
    listed = {s.ours for s in seam.SEAMS}
    missing = []
    for cls in (*trainer_pieces, RoutingActorRolloutRefWorker, RoutingReplayFSDPEngine, CachedMultiTurnSFTDataset):
        ours = f"{cls.__module__}:{cls.__qualname__}"
        for name in vars(cls):
            if name.startswith("_abc") or name.startswith("__") and name not in ("__init__", "__getitem__"):
                continue
            upstream = next((b for b in cls.__mro__[1:] if name in vars(b)), None)
            if upstream is not None and upstream.__module__.split(".")[0] in ("verl", "vllm"):
                if f"{ours}.{name}" not in listed and not (cls is CachedMultiTurnSFTDataset and name == "__init__"):
                    missing.append(f"{ours}.{name} overrides {upstream.__module__}.{upstream.__qualname__}")
    assert missing == []


def test_every_one_of_our_sides_exists():
    for s in seam.SEAMS:
        assert seam.resolve(s.ours) is not None, s.ours


def _two(a, b=1, *rest, c, **kw): ...


def test_a_changed_call_shape_is_named():
    """The comparison itself: a shape, a statement and a body that no longer match are each reported by name."""
    assert seam.call_shape(_two) == "a, b=1, *rest, c, **kw"
    here = f"{__name__}:_two"
    changed = seam.Seam(here, "override", "ours:x", "test", "test", "a, b=2, *rest, c, **kw")
    assert (
        seam.problem(changed)
        == f"{here}: call shape is (a, b=1, *rest, c, **kw), ours:x was written for (a, b=2, *rest, c, **kw)"
    )
    gone = seam.Seam(f"{__name__}:_three", "call", "ours:x", "test", "test", None)
    assert seam.problem(gone).startswith(f"{__name__}:_three: gone (AttributeError")
    stmt = seam.Seam(here, "attribute", "ours:x", "test", "test", None, assigns="self.logger = Tracking(")
    assert "no longer has `self.logger = Tracking(`" in seam.problem(stmt)
    body = seam.Seam(here, "mirror", "ours:x", "test", "test", None, source="0" * 16)
    assert (
        seam.problem(body)
        == f"{here}: its body changed (source {seam.source_hash(_two)}); re-check the mirror in ours:x"
    )
    assert seam.problem(seam.Seam(here, "call", "ours:x", "t", "t", seam.call_shape(_two))) is None


def test_the_docs_table_has_a_row_per_entry_and_the_versions():
    table = seam.markdown_table()
    assert table.count("\n| `") == len(seam.SEAMS)
    assert "verl 0.9.1" in table and "vllm 0.32.0" in table


@pytest.mark.parametrize("s", seam.SEAMS, ids=lambda s: f"{s.kind}:{s.upstream.rsplit(':', 1)[1]}")
def test_entries_are_well_formed(s):
    assert ":" in s.upstream and ":" in s.ours and s.why and s.concern
    assert s.kind in inspect.get_annotations(seam.Seam, eval_str=True)["kind"].__args__
