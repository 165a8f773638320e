"""``python -m inference``: the same as ``mc inference-node``."""

from __future__ import annotations

import argparse
import sys

from inference.cli import _run_node, add_node_arguments

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m inference", description="Maximum Continual inference node")
    add_node_arguments(parser)
    sys.exit(_run_node(parser.parse_args()))
