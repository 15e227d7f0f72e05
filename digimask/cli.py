"""The ``digimask`` command line: one sub-command per administrator task.

Exit codes: 0 success, 1 the task ran and found problems (rejected inputs, failed sends),
2 bad usage or invalid configuration.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from importlib import import_module

from digimask.scp_node.logs import configure as configure_logging

# Each module defines ``register(subparsers)``, which adds its commands with ``func=`` set.
COMMAND_MODULES = (
    "digimask.commands.console",
    "digimask.commands.evaluate",
    "digimask.commands.mask",
    "digimask.commands.measure",
    "digimask.commands.node",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="digimask", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (digimask's own; never pynetdicom's, which quotes UIDs)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # -v is DEBUG for digimask only: pynetdicom's INFO/DEBUG output quotes SOP Instance UIDs (PHI) and
    # pydicom's warnings quote values, at every verbosity they stay off (scp_node/logs.py)
    configure_logging(args.verbose)
    os.umask(0o077)  # the database, outputs and previews may hold original pixels or PHI: owner only
    return int(args.func(args) or 0)
