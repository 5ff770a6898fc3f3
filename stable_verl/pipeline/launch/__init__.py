"""Launching verl and vLLM processes: the CPU environment, streamed subprocesses, process groups, progress."""
