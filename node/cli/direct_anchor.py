"""Direct anchoring of authority-reducing events from the CLI (ADR 0012).

A revocation, a retirement that ends a key earlier, an emergency rotation or a controller rotation
must reach the registry contract's head (a *direct* anchor), not only the next batch root: a batch
root proves an event existed but a node or a bundle can leave it out, and then a revoked key still
verifies as valid offline. Only the registry's head, read from storage with a proof, tells a
verifier that nothing newer was hidden. So these commands queue a direct anchor with the local
node's anchoring service (durable, through ``<data-dir>/chain/requests/``) and wait until the
node's chain watcher has confirmed the registry head at or past the new event, unless told not to
(``--no-wait``), and then they say what is at risk until it is. The node's anchoring service also
anchors its own subject's authority reductions directly by itself (whoever submitted them), so
there is no batch-only opt-out here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer

from ..core.errors import ChainError, NetworkError
from .common import NodeClient, err_console

WaitOpt = Annotated[
    bool,
    typer.Option("--wait/--no-wait", help="Wait until the direct anchor is confirmed on-chain (default: wait)."),
]
AnchorTimeoutOpt = Annotated[
    float, typer.Option("--anchor-timeout", help="Seconds to wait for the direct anchor.", min=1.0)
]

RISK = (
    "until it is anchored directly, a node or an exported bundle can omit it and verifiers would "
    "still accept what it {what}"
)


def anchor_reduction(
    data_dir: Path,
    client: NodeClient,
    subject: bytes,
    seq: int,
    *,
    wait: bool,
    timeout: float,
    what: str,
    quiet: bool = False,
) -> dict[str, Any]:
    """Have ``subject`` anchored directly up to ``seq`` (the authority-reducing event just submitted).

    Returns what was done, for the command's output: ``{"mode", "status", "seq", ...}`` where status
    is ``anchored`` (confirmed), ``queued`` (--no-wait) or ``unanchored`` (no chain configured).
    ``what`` completes the warning ("revokes", "retires", ...). Raises :class:`ChainError` if the
    node refuses the anchor and :class:`NetworkError` if it is not confirmed within ``timeout``.
    """
    from ..chain.anchoring import enqueue_direct, read_queue
    from .common import load

    def say(text: str) -> None:
        if not quiet:
            err_console.print(text)

    config = load(data_dir)
    if not config.chain.rpc_url:
        say(
            "[yellow]warning[/]: chain features are off ([chain] rpc_url is empty): this event is not anchored; "
            + RISK.format(what=what)
        )
        return {"mode": "off", "status": "unanchored", "seq": seq}
    request = enqueue_direct(data_dir, subject)
    out: dict[str, Any] = {"mode": "direct", "status": "queued", "seq": seq, "request": request}
    if not wait:
        say(f"[yellow]queued[/] a direct anchor (request {request}), not waiting: " + RISK.format(what=what))
        return out
    sid = "0x" + subject.hex()
    deadline = time.monotonic() + timeout
    relayed = False
    with err_console.status(f"anchoring seq {seq} of {sid[:18]}… directly", spinner="dots"):
        while True:
            if not relayed:
                done = [r for r in read_queue(data_dir).results if r.get("id") == request]
                if done:
                    result = done[-1]
                    if result.get("status") == "refused":
                        error = result.get("error") or {}
                        raise ChainError(
                            f"the node refused the direct anchor: {error.get('message', 'no reason given')}; "
                            "the event is published but " + RISK.format(what=what)
                        )
                    out["result"] = result
                    relayed = True
            if relayed:
                direct = _direct_head(client, sid)
                if direct is not None and direct["seq"] >= seq:
                    out.update(status="anchored", anchor=direct)
                    say(f"[green]anchored directly[/] at seq {direct['seq']} (block {direct['block']})")
                    return out
            if time.monotonic() > deadline:
                raise NetworkError(
                    f"the direct anchor of seq {seq} was not confirmed within {timeout:.0f}s (request {request} "
                    f"stays queued; see `keyreg chain status -d {data_dir}`): " + RISK.format(what=what)
                )
            time.sleep(0.25)  # polls the node's queue and view until the deadline


def _direct_head(client: NodeClient, sid: str) -> dict[str, Any] | None:
    """The registry head the node's watcher has confirmed for ``sid`` (None if none yet)."""
    try:
        view = client.get(f"/v1/subjects/{sid}")
    except NetworkError:
        return None
    direct = (view.get("anchor") or {}).get("direct")
    return dict(direct) if direct else None
