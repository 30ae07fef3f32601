"""``keyreg init``: create a data directory, its config, admin token and controller keystore."""

from __future__ import annotations

import os
import secrets
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ..core.errors import ConfigError
from . import app as root
from .common import DEFAULT_DATA_DIR, DataDirOpt, JsonOpt, PasswordFileOpt, err_console, handles_errors, print_json

if TYPE_CHECKING:
    from ..keys.keystore import Password


def init_data_dir(
    data_dir: Path,
    password: Password,
    controllers: int = 1,
    threshold: int = 1,
    chain_id: int | None = None,
    registry: str | None = None,
    api_port: int | None = None,
    admin_port: int | None = None,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Create everything a node needs in ``data_dir``; returns a summary (no secrets)."""
    from ..config import Config, NetworkConfig
    from ..core.builder import controller_set
    from ..core.eip712 import controller_commitment
    from ..keys.keystore import Keystore, write_private_text

    if (data_dir / "keystore" / "keystore.json").exists():
        raise ConfigError(f"{data_dir} is already initialised (it holds a keystore); use another --data-dir")
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    cfg = Config(data_dir=data_dir)
    net = cfg.network
    if registry is not None and not (registry.startswith("0x") and len(registry) == 42):
        raise ConfigError(f"--registry must be a 0x-prefixed 20-byte address, got {registry!r}")
    cfg = replace(
        cfg,
        network=NetworkConfig(
            chain_id=chain_id if chain_id is not None else net.chain_id,
            registry=(registry or net.registry).lower(),
        ),
        api=replace(
            cfg.api,
            port=api_port if api_port is not None else cfg.api.port,
            admin_port=admin_port if admin_port is not None else cfg.api.admin_port,
        ),
    )
    config_path = data_dir / "keyreg.toml"
    if not config_path.exists():
        config_path.write_text(cfg.to_toml())
    token_path = data_dir / "admin.token"
    if not token_path.exists():
        write_private_text(token_path, secrets.token_urlsafe(32) + "\n")
    if show_progress:
        with Progress(
            TextColumn("[bold]creating controller keyfiles"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
        ) as progress:
            task = progress.add_task("keys", total=2 * controllers)
            ks = Keystore.create(
                data_dir / "keystore", password, controllers, threshold, lambda: progress.advance(task)
            )
    else:
        ks = Keystore.create(data_dir / "keystore", password, controllers, threshold)
    current = ks.controller_addresses(0)
    nxt = ks.controller_addresses(1)
    assert controller_set(ks.controller_secrets(0)) == current
    return {
        "dataDir": str(data_dir),
        "config": str(config_path),
        "adminToken": str(token_path),
        "keystore": str(data_dir / "keystore"),
        "chainId": cfg.network.chain_id,
        "registry": cfg.network.registry,
        "threshold": threshold,
        "controllers": ["0x" + a.hex() for a in current],
        "nextControllers": ["0x" + a.hex() for a in nxt],
        "nextCommitment": "0x" + controller_commitment(nxt, threshold).hex(),
    }


@root.command("init")
@handles_errors
def init(
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    controllers: Annotated[int, typer.Option(help="Number of controller keys (n of k-of-n).", min=1, max=16)] = 1,
    threshold: Annotated[int, typer.Option(help="Signatures required (k of k-of-n).", min=1, max=16)] = 1,
    chain_id: Annotated[int | None, typer.Option(help="Chain id of the network (default: devnet 31337).")] = None,
    registry: Annotated[str | None, typer.Option(help="Registry contract address (default: the devnet's).")] = None,
    api_port: Annotated[int | None, typer.Option(help="Public API port to write into the config.")] = None,
    admin_port: Annotated[int | None, typer.Option(help="Admin API port (loopback) to write into the config.")] = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a data directory: keyreg.toml, admin.token (0600) and an encrypted keystore.

    The keystore holds N current controller keys and N *next* keys (pre-rotation: the subject's log
    commits to the next set's hash, so a stolen current key cannot take the subject over). The password
    comes from --password-file, KEYREG_PASSWORD, or a prompt.
    """
    from ..keys.keystore import resolve_password

    if threshold > controllers:
        raise ConfigError(f"--threshold {threshold} is more than --controllers {controllers}")
    password = resolve_password(password_file, confirm=True)
    summary = init_data_dir(
        data_dir, password, controllers, threshold, chain_id, registry, api_port, admin_port, show_progress=not as_json
    )
    if as_json:
        print_json(summary)
        return
    err_console.print(f"[green]initialised[/] {summary['dataDir']}")
    err_console.print(f"  network       chainId {summary['chainId']}, registry {summary['registry']}")
    err_console.print(f"  controllers   {threshold} of {', '.join(summary['controllers'])}")
    err_console.print(f"  next (hashed) {summary['nextCommitment']}")
    err_console.print(f"  admin token   {summary['adminToken']} (0600; give it to your service)")
    err_console.print("next: [bold]keyreg node run[/] then [bold]keyreg subject create[/]")
