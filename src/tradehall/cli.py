"""The ``tradehall`` command: one entry point, one subcommand per system.

Each system owns ``tradehall.<system>.cli`` with a ``register(subparsers)`` function that adds its
subcommand and sets ``func`` (taking the parsed namespace, returning an exit code). Systems are
imported lazily by name, so a broken or missing system never takes the others down with it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

from tradehall import __version__
from tradehall.core.config import ConfigError

__all__ = ["main"]

# subcommand -> module with its ``register``; "up" and "bots" belong to the platform package
SYSTEMS = {
    "exchange": "tradehall.exchange.cli",
    "gateway": "tradehall.gateway.cli",
    "tap": "tradehall.tap.cli",
    "up": "tradehall.platform.up_cli",
    "bots": "tradehall.platform.bots_cli",
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every available system's subcommand (or just ``only``'s)."""
    parser = argparse.ArgumentParser(prog="tradehall", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"tradehall {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for system in SYSTEMS if only is None else (only,):
        name = SYSTEMS[system]
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name not in (name, name.rpartition(".")[0]):
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen subcommand; configuration errors exit with status 2."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    # Importing one system is much cheaper than importing all of them; only --help needs all.
    chosen = arguments[0] if arguments and arguments[0] in SYSTEMS else None
    parser = build_parser(chosen)
    args = parser.parse_args(arguments)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ConfigError as exc:
        print(f"tradehall {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
