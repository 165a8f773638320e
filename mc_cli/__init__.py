"""The ``mc`` command: one entry point that dispatches to each part (imported lazily)."""

from mc_cli.main import main

__all__ = ["main"]
