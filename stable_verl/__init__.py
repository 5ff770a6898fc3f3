"""stable-verl: stable RL for LLMs and MoE models on verl (arXiv 2512.01374 recipes).

Layers, each importing only the ones below it (tests/unit/test_layers.py):

* ``cli`` / ``flows`` (the ``flows`` package beside this one): the command line and the Prefect flows;
* ``reports``: comparison, cold-start and grid reports, claims;
* ``eval``: checkpoint evaluation; ``train``: the stages, their lifecycle, verl command lines, ``plan``, preflight;
* ``config``: flow parameters, stage settings, recipes; ``site``: the store's HTML pages and the CLI's views;
* ``launch``: subprocesses and Ray Jobs, process groups, progress-based time limits;
* ``verl_ext``: what plugs into verl and vLLM; ``tasks``, ``models``: the built-in task and tiny model;
* ``artifacts``: the artifact store; ``core``: pure-torch math;
* ``env``: below them all (standard library only): every ``STABLE_VERL_*`` environment variable, declared and read
  in one module.
"""

__version__ = "0.1.0"
