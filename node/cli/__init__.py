"""The ``keyreg`` command. Each topic lives in its own module and registers a typer sub-app here."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="keyreg",
    help="keyreg: a peer-to-peer decentralized key registry (signed key events over libp2p, anchored on Ethereum).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


# The topic modules, each adding its commands/sub-apps to ``app`` when imported, in the order
# ``keyreg --help`` lists them. They are cheap to import (node/cli/common.py states the rule), so all
# of them load for any command and the help lists every command with its own text.
TOPICS = ("chain", "init", "demo", "devnet", "event", "gov", "keys", "node", "store", "subject", "verify")


def _register() -> None:
    for topic in TOPICS:
        importlib.import_module(f"{__name__}.{topic}")


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
