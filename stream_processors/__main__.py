"""``python -m stream_processors``: run one worker (same as ``mc processor``), configured by MC_* env vars."""

from __future__ import annotations

import sys

from stream_processors.cli import run_worker

if __name__ == "__main__":
    sys.exit(run_worker())
