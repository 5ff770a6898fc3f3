"""``python -m stable_verl.cli``: the ``stable-verl`` command."""

import sys

from stable_verl.cli import main

sys.exit(main())
