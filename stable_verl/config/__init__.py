"""What a user sets, validated before anything starts: flow parameters (``params``, loaded from OmegaConf YAML +
overrides), the SFT / RL stage settings (``stages``), recipes compiled to verl overrides without importing verl
(``recipes``), evaluation settings, the checkpoint selector, grid cells, the CPU environment of verl's processes
(``cpu_env``) and the parameter help of the CLI (``param_help``)."""
