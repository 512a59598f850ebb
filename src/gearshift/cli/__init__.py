"""The ``gearshift`` command: one subcommand per module, registered in ``SUBCOMMANDS``.

Each listed module defines ``register(subparsers)``, which adds its parser and sets
``func`` (taking the parsed namespace, returning an exit status). Modules are imported
only when the command line is parsed, so a subcommand's optional dependencies never slow
down or break the others.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from gearshift._build import build_name
from gearshift._version import __version__

#: Subcommand modules under gearshift.cli, in the order shown by --help.
SUBCOMMANDS = ["_serve", "_import", "_submit", "_work", "_admin", "_result", "_schedule"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gearshift", description="Gearman-compatible job server and tools."
    )
    parser.add_argument("-V", "--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"gearshift.cli.{name}").register(sub)
    return parser


def _complete(parser: argparse.ArgumentParser) -> None:
    """Answer a shell's tab completion request (argcomplete, in the ``cli`` extra) and
    exit; returns at once on an ordinary run or without argcomplete. Enable with
    ``eval "$(register-python-argcomplete gearshift)"`` (docs/client.md)."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def version_text() -> str:
    return f"gearshift {__version__} ({build_name()} dispatch)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(argv)
    # Kept for `serve --config-file`, which parses the command line again over the file.
    args.cli_argv = list(sys.argv[1:] if argv is None else argv)
    status: int = args.func(args)
    return status
