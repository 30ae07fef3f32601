"""``keyreg chain deploy|status`` and ``keyreg anchor``: the registry contract and anchoring from the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..core.errors import ChainError, ConfigError, NetworkError
from . import app as root
from .common import DEFAULT_DATA_DIR, DataDirOpt, JsonOpt, err_console, handles_errors, load, out_console, print_json

chain_app = typer.Typer(help="The registry contract: deploy it, and see the node's chain status.", no_args_is_help=True)
root.add_typer(chain_app, name="chain")


def _parse_subject(text: str) -> bytes:
    raw = text.removeprefix("0x")
    try:
        subject = bytes.fromhex(raw)
    except ValueError:
        subject = b""
    if len(subject) != 32:
        raise ConfigError(f"a subject id is 32 bytes of hex (0x + 64 hex digits), got {text!r}")
    return subject


@chain_app.command("deploy")
@handles_errors
def deploy(
    rpc_url: Annotated[str, typer.Option(help="JSON-RPC endpoint.", envvar="KEYREG_CHAIN_RPC_URL")] = (
        "http://127.0.0.1:8545"
    ),
    key_file: Annotated[
        Path | None,
        typer.Option(help="File holding the deployer's hex private key (default: anvil's first dev account)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Deploy the KeyRegistry contract; prints its address (the EIP-712 verifyingContract of the network)."""
    from ..chain.client import redact_url
    from ..chain.deploy import ANVIL_DEV_KEY, connect, deploy_registry

    key = key_file.read_text().strip() if key_file else ANVIL_DEV_KEY
    w3 = connect(rpc_url)
    try:
        chain_id = int(w3.eth.chain_id)
        with err_console.status("deploying KeyRegistry", spinner="dots"):
            contract = deploy_registry(w3, key)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ChainError(f"deploying to {redact_url(rpc_url)} failed: {type(exc).__name__}: {str(exc)[:200]}") from None
    out = {"registry": contract.address.lower(), "chainId": chain_id, "rpc": redact_url(rpc_url)}
    if as_json:
        print_json(out)
        return
    err_console.print(f"[green]deployed[/] KeyRegistry at {out['registry']} on chain {chain_id}")
    err_console.print(f"next: keyreg init --chain-id {chain_id} --registry {out['registry']}")


def _health(data_dir: Path) -> dict[str, Any] | None:
    import httpx

    runfile = data_dir / "node.json"
    try:
        api = json.loads(runfile.read_text())["api"]
        return dict(httpx.get(api + "/v1/health", timeout=5).json())
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return None


@chain_app.command("status")
@handles_errors
def status(data_dir: DataDirOpt = DEFAULT_DATA_DIR, as_json: JsonOpt = False) -> None:
    """The running node's chain status (RPC, blocks, anchor queue); falls back to the saved queue."""
    from ..chain.anchoring import read_queue

    config = load(data_dir)
    health = _health(data_dir)
    chain = (health or {}).get("services", {}).get("chain")
    queue = read_queue(data_dir)
    out: dict[str, Any] = {
        "node": "up" if health else "down",
        "rpc_configured": bool(config.chain.rpc_url),
        "chain": chain,
        "saved_queue": {
            "direct_requests": len(queue.direct),
            "inflight": queue.inflight,
            "last_batch": queue.last_batch,
            "last_results": queue.results[-5:],
        },
    }
    if as_json:
        print_json(out)
        return
    table = Table(title=f"chain status of {data_dir}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("node", out["node"])
    if not config.chain.rpc_url:
        table.add_row("chain", "off ([chain] rpc_url is empty)")
    elif chain:
        for key in ("rpc", "endpoint", "registry", "relayer", "last_block", "confirmed_block", "queue_depth"):
            table.add_row(key, str(chain.get(key)))
        table.add_row("unanchored heads", str(chain.get("unanchored_heads")))
        table.add_row("last error", str(chain.get("last_error") or "-"))
        if chain.get("last_batch"):
            b = chain["last_batch"]
            table.add_row(
                "last batch", f"root {b['root'][:18]}… ({b['count']} heads) block {b['block']} gas {b['gas']}"
            )
    table.add_row("queued direct requests", str(len(queue.direct)))
    out_console.print(table)


@root.command("anchor")
@handles_errors
def anchor(
    subject: Annotated[str | None, typer.Argument(help="Subject id (default: this node's own subject).")] = None,
    direct: Annotated[bool, typer.Option("--direct", help="Relay the signed events to the contract now.")] = False,
    batch: Annotated[bool, typer.Option("--batch", help="Include the head in the next batch root (default).")] = False,
    wait: Annotated[bool, typer.Option(help="Wait until the node reports the head anchored.")] = True,
    timeout: Annotated[float, typer.Option(help="Seconds to wait with --wait.")] = 120.0,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    as_json: JsonOpt = False,
) -> None:
    """Anchor a subject's head on-chain, through the running node's anchoring service.

    --direct queues a direct anchor (the contract verifies the controllers' signatures itself);
    --batch (the default) waits for the next epoch's batch root. The request is durable: it is kept
    in <data-dir>/chain/ until the node has done it, across restarts and RPC outages.
    """
    from ..chain.anchoring import enqueue_direct, read_queue

    if direct and batch:
        raise ConfigError("choose one of --direct and --batch")
    config = load(data_dir)
    if not config.chain.rpc_url:
        raise ConfigError(f"chain features are off in {data_dir}: set [chain] rpc_url (and relayer_keystore)")
    if subject is None:
        ks_meta = data_dir / "keystore" / "keystore.json"
        try:
            sid = json.loads(ks_meta.read_text()).get("subject")
        except (OSError, ValueError):
            sid = None
        if not sid:
            raise ConfigError("no SUBJECT given and this node's keystore has no subject yet")
        subject = str(sid)
    sid_bytes = _parse_subject(subject)
    sid = "0x" + sid_bytes.hex()
    request_id = enqueue_direct(data_dir, sid_bytes) if direct else None
    out: dict[str, Any] = {"subject": sid, "mode": "direct" if direct else "batch", "request": request_id}
    if wait:
        deadline = time.monotonic() + timeout
        with err_console.status(f"waiting for the node to anchor {sid[:18]}… ({out['mode']})", spinner="dots"):
            while True:
                if request_id is not None:
                    done = [r for r in read_queue(data_dir).results if r.get("id") == request_id]
                    if done:
                        out["result"] = done[-1]
                        if done[-1]["status"] == "refused":
                            raise ChainError(f"direct anchor refused: {done[-1]['error']['message']}")
                        request_id = None  # relayed: now wait for the watcher to confirm it
                view = _subject_anchor(data_dir, sid)
                if (
                    request_id is None
                    and view is not None
                    and view.get("status") == "equal"
                    # the registry's head (another node's later batch root may be the newest anchor)
                    and (not direct or (view.get("direct") or {}).get("seq") == view.get("seq"))
                ):
                    out["anchor"] = view
                    break
                if time.monotonic() > deadline:
                    raise NetworkError(f"not anchored within {timeout:.0f}s: see `keyreg chain status -d {data_dir}`")
                time.sleep(0.25)  # polling the node's view with a deadline
    if as_json:
        print_json(out)
        return
    if "anchor" in out:
        a = out["anchor"]
        err_console.print(f"[green]anchored[/] {sid} at seq {a['seq']} ({a['mode']}, block {a['block']})")
    else:
        err_console.print(f"[green]queued[/] {out['mode']} anchor of {sid}")


def _subject_anchor(data_dir: Path, sid: str) -> dict[str, Any] | None:
    import httpx

    try:
        api = json.loads((data_dir / "node.json").read_text())["api"]
        resp = httpx.get(f"{api}/v1/subjects/{sid}", timeout=5)
        if resp.status_code != 200:
            return None
        return dict(resp.json().get("anchor") or {})
    except (OSError, ValueError, KeyError, httpx.HTTPError):
        return None
