"""Launching verl and vLLM processes through one seam, a local subprocess or a Ray Job on an existing cluster
(``runner``, ``ray_job``): process groups (``procs``), progress-based time limits (``progress``, ``stall``), the
errors a failed run's log names (``log_errors``), experiment trackers' settings (``tracking``) and which failures are
transient (``transient``)."""
