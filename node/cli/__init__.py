"""The ``keyreg`` command. Each topic lives in its own module and registers a typer sub-app here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="keyreg",
    help="keyreg: a peer-to-peer decentralized key registry (signed key events over libp2p, anchored on Ethereum).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    # One import per topic module; each module adds its commands/sub-apps to ``app``.
    from . import (  # noqa: F401
        chain,
        demo,
        devnet,
        event,
        gov,
        init,
        keys,
        node,
        store,
        subject,
        verify,
    )


def main() -> None:
    """Console-script entry point."""
    _register()
    app()
