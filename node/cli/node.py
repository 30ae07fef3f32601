"""``keyreg node run``: run a node (API, admin endpoint, services) in the foreground."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import replace
from typing import Annotated

import typer

from . import app as root
from .common import DEFAULT_DATA_DIR, DataDirOpt, PasswordFileOpt, handles_errors, load

node_app = typer.Typer(help="Run and inspect the local node.", no_args_is_help=True)
root.add_typer(node_app, name="node")


@node_app.command("run")
@handles_errors
def run(
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    host: Annotated[str | None, typer.Option(help="Public API host (default: config api.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Public API port; 0 = any free port (default: config).")] = None,
    admin_port: Annotated[int | None, typer.Option(help="Admin API port on loopback; 0 = any free port.")] = None,
    password_file: PasswordFileOpt = None,
    no_keystore: Annotated[
        bool, typer.Option(help="Run without unlocking the keystore (no admin keys, no rotation).")
    ] = False,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error (default: config).")] = None,
) -> None:
    """Run the node until SIGINT/SIGTERM: HTTP API, loopback admin endpoint, rotation, p2p and chain services.

    Logs go to stderr. The keystore password comes from --password-file or KEYREG_PASSWORD (or a prompt
    in a terminal); without it the node still serves the registry but not the service's signing key.
    Where it listens is also written to <data-dir>/node.json.
    """
    from ..app import run_node
    from ..keys.keystore import resolve_password

    config = load(data_dir)
    api = config.api
    api = replace(
        api,
        host=host if host is not None else api.host,
        port=port if port is not None else api.port,
        admin_port=admin_port if admin_port is not None else api.admin_port,
    )
    config = replace(config, api=api, log_level=log_level or config.log_level)
    logging.basicConfig(
        level=getattr(logging, config.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)  # migration chatter at every start
    password = None
    if not no_keystore and (data_dir / "keystore" / "keystore.json").exists():
        password = resolve_password(password_file, prompt=sys.stdin.isatty())
    os.environ.pop("KEYREG_PASSWORD", None)  # the child services have no use for it
    run_node(config, password)


if __name__ == "__main__":  # `python -m keyreg.cli.node run ...`: the node alone, without other CLI topics
    root()
