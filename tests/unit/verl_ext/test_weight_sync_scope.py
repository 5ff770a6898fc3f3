"""The weight-sync socket's path per Ray cluster (stable_verl/verl_ext/weight_sync_scope.py)."""

from stable_verl.verl_ext.weight_sync_scope import scoped

VERL = "ipc:///tmp/rl-colocate-zmq-01000000-replica-0-rank-0.sock"


def test_a_ray_worker_inserts_its_raylet():
    assert (
        scoped(VERL, {"RAY_RAYLET_PID": "77"}) == "ipc:///tmp/rl-colocate-zmq-raylet77-01000000-replica-0-rank-0.sock"
    )


def test_scoping_twice_changes_nothing_more():
    once = scoped(VERL, {"RAY_RAYLET_PID": "77"})
    assert scoped(once, {"RAY_RAYLET_PID": "77"}) == once


def test_outside_ray_and_other_paths_are_left_alone():
    assert scoped(VERL, {}) == VERL
    assert scoped("ipc:///tmp/other.sock", {"RAY_RAYLET_PID": "77"}) == "ipc:///tmp/other.sock"
    assert scoped("tcp://127.0.0.1:5555", {"RAY_RAYLET_PID": "77"}) == "tcp://127.0.0.1:5555"
