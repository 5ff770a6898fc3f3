"""Checkpoint evaluation: what to score and where the results go in the store (``checkpoints``), and the vLLM
subprocess that samples k responses per held-out prompt and scores them with the task's reward (``worker``)."""
