"""A user's own base model: a Hugging Face model folder, named by a local path, an ``s3://`` prefix or a hub id.

Only the description lives here (what the parameters hold); :mod:`stable_verl.train.model_source` resolves it
to a local folder and fingerprints it for run ids.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_LOCAL_PREFIXES = ("/", "./", "../", "~")


@dataclass(frozen=True)
class HFModel:
    """Your own base model (a Hugging Face model folder with ``config.json``), instead of the built-in tiny one."""

    path: str
    """A local folder, an ``s3://bucket/prefix`` folder, or a Hugging Face hub id ``org/name``."""
    revision: str | None = None
    """Hub ids only: a branch, tag or commit (default: main), resolved once to its commit."""
    trust_remote_code: bool = False
    """Let transformers, verl and vLLM run the model's own code (``auto_map`` in config.json)."""
    chat_template: str | None = None
    """A Jinja chat template, or the path of a file holding one, replacing the tokenizer's (None: the model's)."""

    def __post_init__(self) -> None:
        if not self.path.strip():
            raise ValueError("model.path is empty: give a local folder, s3://bucket/prefix or a hub id org/name")
        if self.revision is not None and self.source != "hub":
            raise ValueError(f"model.revision applies to hub ids (org/name), and model.path={self.path} is not one")

    @property
    def source(self) -> Literal["local", "s3", "hub"]:
        """'s3' for ``s3://``; 'hub' for ``org/name`` that is not an existing local folder; else 'local'."""
        if self.path.startswith("s3://"):
            return "s3"
        if self.path.startswith(_LOCAL_PREFIXES) or Path(self.path).exists() or not _HUB_ID.fullmatch(self.path):
            return "local"
        return "hub"

    def chat_template_text(self) -> str | None:
        """The template itself: the file's text when ``chat_template`` names an existing file, else the value."""
        if self.chat_template is None:
            return None
        if "{" not in self.chat_template:  # a Jinja template has tags; anything else is a file name
            file = Path(self.chat_template).expanduser()
            if not file.is_file():
                raise ValueError(f"model.chat_template {self.chat_template}: no such file (or give the Jinja text)")
            return file.read_text()
        return self.chat_template
