"""Helpers the tests share (imported, not collected): the moto S3 server, a stand-in verl trainer, a populated store
for the page tests, a local multi-node Ray cluster, a user's model, data and reward, vLLM in a subprocess, a run
killed at chosen points, and the cold-start end-to-end run."""
