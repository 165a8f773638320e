"""Which install extra a part needs: a part started without it says so, instead of a bare
``ModuleNotFoundError`` from deep inside an import.

The extras are those of ``pyproject.toml`` (``pip install 'maximum-continual[trainer]'``); the table
maps the top-level module of each third-party dependency to the extras that bring it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from schemas.errors import ConfigurationError

__all__ = ["EXTRA_OF_MODULE", "MissingExtraError", "missing_extra", "needs_extra"]

#: top-level module -> the extras that install it (the first is the one to suggest)
EXTRA_OF_MODULE: dict[str, tuple[str, ...]] = {
    "faust": ("processor",),
    "aiokafka": ("processor",),
    "rocksdict": ("processor",),
    "torch": ("trainer", "stack"),
    "transformers": ("trainer", "stack"),
    "peft": ("trainer",),
    "safetensors": ("trainer", "inference"),
    "fastapi": ("inference",),
    "uvicorn": ("inference",),
    "boto3": ("trainer", "inference", "stack"),
    "botocore": ("trainer", "inference", "stack"),
    "smolagents": ("sdk",),
    "httpx": ("sdk", "inference", "processor", "dashboard"),
    "prometheus_client": ("processor", "trainer", "inference", "dashboard"),
    "gguf": ("stack",),
    "PIL": ("demo",),
    "tqdm": ("demo", "trainer", "inference", "stack"),
}


class MissingExtraError(ConfigurationError):
    """A part's dependency is not installed; the message names the extra that brings it."""

    def __init__(self, module: str, extras: tuple[str, ...], part: str | None = None) -> None:
        self.module, self.extras, self.part = module, extras, part
        who = f"`{part}`" if part else "this command"
        also = f" (also in: {', '.join(extras[1:])})" if len(extras) > 1 else ""
        super().__init__(
            f"{who} needs the Python module {module!r}, which is not installed: "
            f"pip install 'maximum-continual[{extras[0]}]'{also}, or 'maximum-continual[all]'"
        )


def missing_extra(exc: ModuleNotFoundError, part: str | None = None) -> MissingExtraError | None:
    """The typed error for ``exc`` when it is a known dependency of an extra; None when it is not
    (a missing module of the project itself is a broken install, not a missing extra)."""
    top = (exc.name or "").split(".")[0]
    extras = EXTRA_OF_MODULE.get(top)
    return None if extras is None else MissingExtraError(top, extras, part)


@contextmanager
def needs_extra(part: str) -> Iterator[None]:
    """Around a part's entry point (``python -m trainer``, ...): a missing dependency of an extra
    ends the process with the message and status 2; any other error passes through."""
    try:
        yield
    except ModuleNotFoundError as exc:
        err = missing_extra(exc, part)
        if err is None:
            raise
        print(f"{part}: {type(err).__name__}: {err}", file=sys.stderr)
        raise SystemExit(2) from None
