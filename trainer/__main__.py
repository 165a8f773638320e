"""``python -m trainer [--max-windows N] [--idle-exit S]``: run the trainer service."""

import sys

from schemas.extras import needs_extra

if __name__ == "__main__":
    with needs_extra("trainer"):
        from trainer.cli import main

        sys.exit(main(sys.argv[1:]))
