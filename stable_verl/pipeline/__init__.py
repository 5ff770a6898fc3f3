"""The pipeline under the flows: stages and their tracked lifecycle, verl command lines, recipes, evaluation, reports.

* the stages: ``train_stages`` (SFT and RL, run ids, jobs), ``run_lifecycle`` (skip / resume / sync / finalize),
  ``checkpoint_sync``, ``assets`` (locally built model and data), ``plan`` (``stable-verl plan``);
* configs: ``params`` (flow parameters), ``config`` (SFT / RL stage settings), ``recipes``, ``yaml_config``;
* verl: ``verl_command`` (command lines), ``launch/`` (subprocesses, process groups, progress, CPU settings);
* evaluation: ``checkpoint_eval`` (what to score, the store), ``eval_worker`` (the vLLM subprocess);
* reports: ``compare``, ``coldstart``, ``grid``, ``grid_page``, ``claims``.
"""
