"""Pure-torch math of stable-verl (MiniRL, CISPO, advantages, diagnostics, routing replay): no verl/Prefect/S3 imports.

``reference`` holds hand-written forms the tests check verl and our losses against; no training path uses it.
"""
