"""Test-only failure injection for a trainer process (no switch of it lives in production settings).

``MC_TEST_FAILPOINT=STEP[@VERSION] python -m tests.test_trainer_failpoint [mc trainer options]``
runs the trainer's own ``main`` after wrapping the publication steps so that the process SIGKILLs
itself right after one of them: ``after_upload`` (files in S3, no manifest), ``after_manifest``
(not announced), ``after_announce`` (not committed). Used by tests/test_trainer_restart.py.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["install"]


def install(spec: str) -> None:
    """Wrap the trainer's publication steps: die at ``spec`` (``STEP`` or ``STEP@VERSION``)."""
    from trainer.publish import AdapterPublisher
    from trainer.store import AdapterStore

    def die(step: str, version: int) -> None:
        if spec in (step, f"{step}@{version}"):
            logging.getLogger("trainer.failpoint").warning("failpoint %s at v%d: SIGKILL", step, version)
            os.kill(os.getpid(), signal.SIGKILL)

    upload, put, announce = AdapterStore.upload_files, AdapterStore.put_manifest, AdapterPublisher.announce

    def upload_files(self: Any, model_id: str, version: int, folder: Path, example_ids: list[str]) -> Any:
        digests = upload(self, model_id, version, folder, example_ids)
        die("after_upload", version)
        return digests

    def put_manifest(self: Any, update: Any) -> bool:
        created = put(self, update)
        if created:
            die("after_manifest", update.version)
        return created

    def announce_then_die(self: Any, update: Any) -> None:
        announce(self, update)
        die("after_announce", update.version)

    AdapterStore.upload_files = upload_files  # type: ignore[method-assign]
    AdapterStore.put_manifest = put_manifest  # type: ignore[method-assign]
    AdapterPublisher.announce = announce_then_die  # type: ignore[method-assign]


if __name__ == "__main__":
    from trainer.cli import main

    install(os.environ.get("MC_TEST_FAILPOINT", ""))
    sys.exit(main(sys.argv[1:]))
