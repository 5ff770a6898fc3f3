"""Verifiable tasks: the built-in arithmetic task (generated problems, verl-schema datasets, teacher styles, its
reward), a user's task in verl's own conventions (``user_task``: parquet / JSON lines per split), and the one reward
function training and evaluation share (``reward_fn``)."""
