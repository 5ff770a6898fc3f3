"""The precision sweep's input checks (the sweep itself runs the RL flow: real verl, not a unit test)."""

from __future__ import annotations

import pytest

from flows.precision_sweep import main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "init_run is required"),
        (["init_run=sft-x-00000000", "store.root=s3://bucket/prefix"], "must be a local folder"),
        (["init_run=sft-x-00000000", "--arms=R4"], "unknown routing arm"),
        (["init_run=sft-x-00000000", "rl.no_such_key=1"], "no_such_key"),
    ],
)
def test_bad_input_exits_2_before_any_run(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("precision_sweep: error: ") and message in err[0]
