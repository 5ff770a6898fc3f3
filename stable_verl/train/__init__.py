"""Training stages and their tracked lifecycle: SFT and RL runs with content-addressed ids (``stages``), skip /
resume / lease / finalize (``lifecycle``), verl command lines (``verl_command``), the inputs (built-in ``assets`` or
the user's model, ``model_source``; ``node_inputs`` on a cluster), checkpoints synced to and imported into the store
(``checkpoint_sync``, ``checkpoint_import``), the SFT entrypoint of a Ray Job (``node_sft``), ``plan`` (``stable-verl
plan``) and the ``preflight`` checks of a flow's inputs."""
