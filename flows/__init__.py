"""Prefect flows: thin declarations over stable_verl.pipeline (parameters -> stage calls -> artifacts)."""
