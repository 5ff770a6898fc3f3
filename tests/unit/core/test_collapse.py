"""Collapse detector: flags only when entropy has dropped and the train-inference KL has spiked, after warmup."""

from __future__ import annotations

import pytest

from stable_verl.core.collapse import CollapseDetector

HEALTHY = (2.0, 0.01)  # entropy, KL


def feed(detector, steps):
    return [detector.update(entropy, kl) for entropy, kl in steps]


def test_no_flag_during_warmup():
    # both conditions hold at steps 2 and 3 (entropy 0.5 < 0.5 * 2.0 would hold), but those are warmup steps
    d = CollapseDetector(warmup_steps=3)
    assert feed(d, [HEALTHY, (0.5, 1.0), (0.5, 1.0)]) == [False, False, False]
    assert not d.collapsed


def test_entropy_drop_alone_does_not_flag():
    d = CollapseDetector()
    # max entropy 2.0 -> threshold (1 - 0.5) * 2.0 = 1.0; entropy 0.5 is below it but KL stays flat
    assert not any(feed(d, [HEALTHY] * 4 + [(0.5, 0.01)] * 5))


def test_kl_spike_alone_does_not_flag():
    d = CollapseDetector()
    # post-warmup KL minimum 0.01 -> spike threshold 10 * 0.01 = 0.1; KL 1.0 exceeds it but entropy stays at 2.0
    assert not any(feed(d, [HEALTHY] * 4 + [(2.0, 1.0)] * 5))


def test_both_flag_and_latch():
    d = CollapseDetector()
    # steps 1-3 warmup; step 4 sets the KL reference 0.01; step 5: entropy 0.9 < 1.0 and KL 0.2 > 0.1 -> flag
    flags = feed(d, [HEALTHY] * 4 + [(0.9, 0.2)])
    assert flags == [False] * 4 + [True]
    assert d.collapsed
    assert feed(d, [HEALTHY, HEALTHY]) == [True, True]  # latched even after recovery
    assert d.collapsed


def test_thresholds_are_strict():
    d = CollapseDetector()
    feed(d, [HEALTHY] * 4)
    assert not d.update(1.0, 0.1)  # entropy == 0.5 * 2.0 and KL == 10 * 0.01: neither strictly crossed
    assert d.update(0.99, 0.11)


def test_first_post_warmup_step_sets_the_kl_reference():
    d = CollapseDetector(warmup_steps=1)
    # step 1 warmup (entropy max 2.0; KL 1e-6 is NOT a reference); step 2 sets KL min 0.01; step 3 flags
    assert feed(d, [(2.0, 1e-6), (0.5, 0.01), (0.5, 0.5)]) == [False, False, True]


def test_non_finite_values_are_ignored():
    d = CollapseDetector()
    assert not any(feed(d, [HEALTHY] * 4 + [(float("nan"), float("nan")), (float("inf"), 1.0)]))
    assert d.update(0.5, 1.0)  # references are still 2.0 / 0.01


def test_a_zero_kl_reference_is_floored():
    # On-policy fp32 can log a KL of exactly 0: without the floor the reference 0 makes 10 * 0 = 0 the spike
    # threshold, so any later KL > 0 would be a "spike". Floor 1e-6 -> threshold 10 * 1e-6 = 1e-5.
    d = CollapseDetector()
    assert not any(feed(d, [(2.0, 0.0)] * 4 + [(0.5, 1e-9), (0.5, 9e-6)]))  # noise, then just below the threshold
    assert d.update(0.5, 2e-5)  # a real spike above the floored reference still flags


def test_state_round_trips_through_json_and_keeps_the_latch():
    import json

    d = CollapseDetector()
    feed(d, [HEALTHY] * 4 + [(0.9, 0.2)])  # flags at step 5 (see test_both_flag_and_latch)
    state = json.loads(json.dumps(d.state_dict()))
    assert state == {"step": 5, "max_entropy": 2.0, "min_kl": 0.01, "collapsed": True}
    resumed = CollapseDetector()
    resumed.load_state_dict(state)
    assert resumed.collapsed and resumed.update(*HEALTHY)
    assert CollapseDetector().state_dict() == {"step": 0, "max_entropy": None, "min_kl": None, "collapsed": False}
    with pytest.raises(ValueError, match=r"lacks \['collapsed'\]"):
        resumed.load_state_dict({"step": 1, "max_entropy": 1.0, "min_kl": None})


def test_restored_references_carry_over_a_restart():
    # Steps 1-4 before the restart set the references (entropy max 2.0, KL min 0.01). After the restart a
    # detector given that state flags step 5, as an uninterrupted one does; a fresh one is still in warmup.
    before = CollapseDetector()
    feed(before, [HEALTHY] * 4)
    resumed, fresh = CollapseDetector(), CollapseDetector()
    resumed.load_state_dict(before.state_dict())
    assert resumed.update(0.9, 0.2) and before.update(0.9, 0.2)
    assert not fresh.update(0.9, 0.2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"entropy_drop": 0.0}, "entropy_drop"),
        ({"entropy_drop": 1.0}, "entropy_drop"),
        ({"kl_spike": 1.0}, "kl_spike"),
        ({"warmup_steps": -1}, "warmup_steps"),
        ({"warmup_steps": 2.5}, "warmup_steps"),
        ({"kl_floor": 0.0}, "kl_floor"),
    ],
)
def test_bad_fields_raise(kwargs, field):
    with pytest.raises(ValueError, match=field):
        CollapseDetector(**kwargs)
