"""``python -m stream_processors``: run one worker (same as ``mc processor``), configured by MC_* env vars."""

from __future__ import annotations

import sys

from schemas.extras import needs_extra

if __name__ == "__main__":
    with needs_extra("processor"):
        from stream_processors.cli import run_worker

        sys.exit(run_worker())
