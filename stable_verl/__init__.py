"""stable-verl: stable RL for LLMs and MoE models on verl (arXiv 2512.01374 recipes)."""

__version__ = "0.1.0"
