"""``python -m inference``: the same as ``mc inference-node``."""

from __future__ import annotations

import argparse
import sys

from schemas.extras import needs_extra

if __name__ == "__main__":
    with needs_extra("inference"):
        from inference.cli import _run_node, add_node_arguments

        parser = argparse.ArgumentParser(prog="python -m inference", description="Maximum Continual inference node")
        add_node_arguments(parser)
        sys.exit(_run_node(parser.parse_args()))
