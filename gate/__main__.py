"""``python -m gate``: the same as ``mc gate``."""

import sys

from mc_cli.main import main

sys.exit(main(["gate", *sys.argv[1:]]))
