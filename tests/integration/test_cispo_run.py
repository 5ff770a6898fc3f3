"""CISPO as Appendix A writes it, in a real verl run on CPU: ``loss_mode=cispo_group`` trains.

The run is the tiny stability grid's CISPO cell (N = 1, fp8 rollouts; ``tiny_grid`` in conftest).

The group token counts travel from the stable_sync trainer (batch field) through stable-verl's actor worker (loss
wrapper) into the registered loss, which refuses to run without them: a break anywhere on that path fails the run.
"""

from __future__ import annotations

import math

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.extended]  # make test-extended (Makefile)


@pytest.fixture(scope="module")
def cispo_rows(tiny_grid):
    return tiny_grid.run("cispo")


def test_cispo_group_loss_trains(cispo_rows):
    rows, command = cispo_rows
    assert "policy_loss.loss_mode=cispo_group" in command and "loss_agg_mode=token-mean" in command
    assert [r["step"] for r in rows] == list(range(1, len(rows) + 1)) and rows
    for row in rows:
        assert math.isfinite(row["actor/pg_loss"]), row["step"]
        assert 0 <= row["actor/pg_clipfrac"] <= 1
    assert any(r["actor/grad_norm"] > 0 for r in rows)


def test_entropy_per_token_equals_verls_under_token_mean(cispo_rows):
    # verl aggregates actor/entropy with the actor's loss_agg_mode; under token-mean that is the per-token mean.
    rows, _ = cispo_rows
    for row in rows:
        assert row["actor/entropy_per_token"] == pytest.approx(row["actor/entropy"], rel=1e-4), row["step"]
