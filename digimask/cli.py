"""The ``digimask`` command line: one sub-command per administrator task.

Exit codes: 0 success, 1 the task ran and found problems (rejected inputs, failed sends),
2 bad usage or invalid configuration.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from importlib import import_module

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
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:  # pynetdicom logs every PDU at INFO: costly per image, and noise for administrators
        logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    return int(args.func(args) or 0)
