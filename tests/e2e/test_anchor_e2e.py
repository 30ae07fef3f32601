"""Done-when test of anchoring: anvil + the registry + 3 real `keyreg node run` processes.

A rotation submitted to node 1 gossips to all nodes, is anchored in a batch and directly, and all
three nodes report it anchored through their HTTP API; a cheating relayer's transactions revert;
anvil killed mid-run and restarted from its state file leaves every node serving, and the anchor
queue drains after recovery. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from keyreg.chain.anchoring import enqueue_direct, read_queue
from keyreg.chain.client import ChainClient, TransactionReverted
from keyreg.chain.deploy import anvil_binary, free_port
from keyreg.cli.devnet import anvil_account_key, devnet_down, devnet_up, restart_anvil
from keyreg.cli.devnet_demo import create_and_rotate, subject_view, wait_until
from keyreg.config import load_config
from keyreg.core import builder
from keyreg.core.codec import event_to_obj
from keyreg.core.records import PublishedKey

pytestmark = [pytest.mark.e2e, pytest.mark.anvil, pytest.mark.slow]

TIMEOUT = 60.0


@pytest.fixture
def devnet(tmp_path: Path) -> Iterator[dict[str, Any]]:
    if not anvil_binary().exists():
        pytest.skip(f"anvil binary missing at {anvil_binary()}: run `npm ci --prefix contracts`")
    directory = tmp_path / "devnet"
    chain = {"confirmations": 1, "poll_interval_s": 0.3, "anchor_epoch_s": 2.0, "retry_max_s": 1.0}
    try:
        yield devnet_up(directory, nodes=3, port=free_port(), block_time=1.0, chain=chain, progress=False)
    finally:
        devnet_down(directory)


def health(node: dict[str, Any]) -> dict[str, Any]:
    resp = httpx.get(node["api"] + "/v1/health", timeout=5)
    assert resp.status_code == 200
    return dict(resp.json())


def chain_of(node: dict[str, Any]) -> dict[str, Any]:
    return dict(health(node)["services"]["chain"])


def anchor_of(node: dict[str, Any], sid: str) -> dict[str, Any]:
    view = subject_view(node["api"], sid) or {}
    return dict(view.get("anchor") or {})


def all_anchored(nodes: list[dict[str, Any]], sid: str, head: str, direct: bool = False) -> bool:
    """Every node holds ``head`` and sees it anchored (with ``direct``: as the registry's head)."""
    for n in nodes:
        view = subject_view(n["api"], sid)
        if view is None or view["head"] != head:
            return False
        a = view.get("anchor") or {}
        if a.get("status") != "equal" or (direct and (a.get("direct") or {}).get("seq") != view["seq"]):
            return False
    return True


def cheat(devnet: dict[str, Any], sid: str) -> None:
    """A relayer forges the next update (signed by a non-controller) and replays an anchored one."""
    nodes = devnet["nodes"]
    view = subject_view(nodes[0]["api"], sid)
    assert view is not None
    subject = bytes.fromhex(sid[2:])
    now = int(time.time())
    intruder = (0xBAD).to_bytes(32, "big")
    forged = builder.sign_event(
        load_config(Path(nodes[0]["dataDir"])).domain,
        builder.update(
            subject,
            view["seq"] + 1,
            bytes.fromhex(view["head"][2:]),
            now,
            publish=[PublishedKey("evil", "Ed25519", bytes(32), ("sig",), now, 0)],
        ),
        [intruder],
    )
    controllers = tuple(bytes.fromhex(c[2:]) for c in view["controllers"])
    from keyreg.chain.deploy import event_input

    forged_input = event_input(forged, controllers, view["threshold"])
    client = ChainClient(devnet["rpc"], devnet["registry"], relayer_key=anvil_account_key(9), timeout_s=5)

    async def main() -> None:
        with pytest.raises(TransactionReverted) as err:
            await client.anchor_events([forged_input])
        assert err.value.details["error"] == "NotAController"
        tx = await client.anchor_events([forged_input], gas=400_000)  # paid for, mined, reverted
        with pytest.raises(TransactionReverted):
            await client.wait_receipt(tx, 0.1, 30)
        assert await client.head_of(subject) == (view["seq"], bytes.fromhex(view["head"][2:]))

    trio.run(main)


def test_rotation_is_anchored_and_survives_an_rpc_outage(devnet: dict[str, Any]) -> None:
    nodes = devnet["nodes"]
    first = Path(nodes[0]["dataDir"])
    password = (Path(devnet["dir"]) / "password").read_text().strip()

    # a subject and a key rotation with overlap, submitted to node 1 only
    sid, _ = create_and_rotate(first, password, nodes[0]["api"])
    head = subject_view(nodes[0]["api"], sid)["head"]  # type: ignore[index]

    # gossip reaches every node; batch roots (nodes 2 and 3 post them too) anchor the head for all of
    # them, and node 1 anchors its own subject's rotation (it retires a key) directly (ADR 0012)
    wait_until(lambda: all_anchored(nodes, sid, head), TIMEOUT, "the anchor on all nodes")

    # direct anchoring on request: node 1 relays the signed events; the contract checks the signatures
    request = enqueue_direct(first, bytes.fromhex(sid[2:]))
    wait_until(lambda: all_anchored(nodes, sid, head, direct=True), TIMEOUT, "the direct anchor on all nodes")
    wait_until(
        lambda: [r for r in read_queue(first).results if r["id"] == request], TIMEOUT, "the direct request's result"
    )
    [result] = [r for r in read_queue(first).results if r["id"] == request]
    assert result["status"] in ("anchored", "already")  # "already": the automatic direct anchor came first

    # a cheating relayer cannot write a head the subject did not sign
    cheat(devnet, sid)

    # anvil dies mid-run; nodes keep serving and gossiping, anchors queue up
    os.kill(devnet["anvil"]["pid"], signal.SIGKILL)
    wait_until(lambda: all(chain_of(n)["rpc"] == "down" for n in nodes), TIMEOUT, "every node to report rpc down")
    from keyreg.keys.keystore import Keystore, Password
    from keyreg.keys.operations import Head, sign_update

    ks = Keystore.open(first / "keystore").unlock(Password(password))
    view = subject_view(nodes[0]["api"], sid)
    assert view is not None
    now = int(time.time())
    update = sign_update(
        ks,
        load_config(first).domain,
        Head(bytes.fromhex(sid[2:]), view["seq"], bytes.fromhex(view["head"][2:]), view["timestamp"]),
        now,
        # an expiring key: node 1 holds only its operator key (default custody), which publishes no other
        [PublishedKey("svc-outage", "Ed25519", bytes(31) + b"\x07", ("sig",), now, now + 3600)],
    )
    resp = httpx.post(nodes[0]["api"] + "/v1/events", json={"events": [event_to_obj(update)]}, timeout=10)
    assert resp.status_code < 300, resp.text
    new_head = resp.json()["results"][0]["digest"]
    wait_until(
        lambda: all((subject_view(n["api"], sid) or {}).get("head") == new_head for n in nodes),
        TIMEOUT,
        "gossip of the new head while the chain is down",
    )
    enqueue_direct(first, bytes.fromhex(sid[2:]))
    wait_until(lambda: chain_of(nodes[0])["queue_depth"] >= 2, TIMEOUT, "node1 to queue the anchors")
    st = chain_of(nodes[0])
    assert st["rpc"] == "down"
    assert st["last_error"]

    # anvil restarts from its state file: every node recovers and node 1 drains its queue
    restart_anvil(Path(devnet["dir"]), 1.0)
    wait_until(
        lambda: all(chain_of(n)["rpc"] == "ok" for n in nodes) and chain_of(nodes[0])["queue_depth"] == 0,
        TIMEOUT,
        "recovery and a drained anchor queue",
    )
    wait_until(lambda: all_anchored(nodes, sid, new_head), TIMEOUT, "the new head anchored on all nodes")
    for n in nodes:
        assert health(n)["ok"] is True
