"""Pure-torch math of stable-verl (MiniRL loss, baselines, advantages, diagnostics): no verl/Prefect/S3 imports."""
