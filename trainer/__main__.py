"""``python -m trainer [--max-windows N] [--idle-exit S]``: run the trainer service."""

import sys

from trainer.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
