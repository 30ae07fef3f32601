"""The devnet scenario: a subject created on node 1, a key rotation with overlap, gossip to every
node, a batch anchor and a direct anchor, each confirmed by every node's API; then a governance
revocation (a DAO the second subject named votes, one ballot gasless and relayed by another node,
executes, and every node applies it); then a summary.

The governance step's accounts are fresh throwaway keys funded with ``anvil_setBalance``, so they
never share a nonce with the nodes' relayers (anvil accounts 1..N) whatever the number of nodes.
"""

from __future__ import annotations

import functools
import secrets
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from ..config import load_config
from ..core.codec import event_to_obj
from ..core.errors import NetworkError
from ..gov.scenario import wait_for as wait_until
from .common import NodeClient, err_console, out_console

OVERLAP_S = 3600
REPORT_WIDTH = 120  # when stdout/stderr is not a terminal (a pipe, a CI log), rich would default to 80


def report_console(stderr: bool = False) -> Console:
    """The CLI's console on a terminal; a fixed-width one otherwise, so tables are not squeezed."""
    console = err_console if stderr else out_console
    return console if console.is_terminal else Console(stderr=stderr, width=REPORT_WIDTH)


def _step(progress: bool, text: str) -> None:
    if progress:
        report_console(stderr=True).print(f"[green]✓[/] {text}", highlight=False)


def subject_view(api: str, sid: str) -> dict[str, Any] | None:
    resp = httpx.get(f"{api}/v1/subjects/{sid}", timeout=5)
    return dict(resp.json()) if resp.status_code == 200 else None


def create_and_rotate(data_dir: Path, password: str, api: str) -> tuple[str, dict[str, Any]]:
    """Subject with key A on node 1, then publish key B and retire A after an overlap; returns (sid, info)."""
    from ..core.eip712 import event_digest
    from ..keys.keystore import Keystore, Password
    from ..keys.operations import Head, sign_inception, sign_update
    from ..keys.rotation import KeyWindow, plan_manual_rotation
    from ..keys.service_keys import ServiceKey
    from .init import pending_inception

    config = load_config(data_dir)
    ks = Keystore.open(data_dir / "keystore").unlock(Password(password))
    client = NodeClient(api)
    t0 = int(time.time())
    if ks.holds_controllers:  # a devnet made before custody modes (all-on-node): a fresh subject per run
        key_a = ServiceKey.generate("Ed25519", f"svc-{t0}-a")
        signed = sign_inception(ks, config.domain, t0, [key_a.published(("sig",), t0)], "devnet demo")
        ks.add_service_key(key_a, ("sig",))
    else:  # default custody: the inception the controllers signed at `keyreg init` (submitted once)
        signed = pending_inception(data_dir)
    subject = event_digest(config.domain, signed.event)
    client.post_events([event_to_obj(signed)])
    if ks.subject is None:
        ks.set_subject(subject)
    sid = "0x" + subject.hex()
    state = client.get(f"/v1/subjects/{sid}")
    head = Head(subject, state["seq"], bytes.fromhex(state["head"][2:]), state["timestamp"])
    t1 = int(time.time())
    live = [k for k in state["keys"] if k["status"] in ("valid", "not-yet-valid")]
    old_key = max(live, key=lambda k: k["validFrom"])["keyId"]
    windows = [KeyWindow(k["keyId"], k["validFrom"], k["notAfter"], k["revokedAt"]) for k in live]
    plan = plan_manual_rotation(t1, windows, OVERLAP_S)
    key_b = ServiceKey.generate("Ed25519", f"svc-{t0}-b")
    ks.add_service_key(key_b, ("sig",))
    policy = ks.operator_policy  # the operator key publishes only keys that expire within its limit
    not_after = head.next_timestamp(t1) + policy.max_validity if policy is not None else 0
    rotation = sign_update(ks, config.domain, head, t1, [key_b.published(("sig",), t1, not_after)], plan.retire)
    client.post_events([event_to_obj(rotation)])
    client.close()
    return sid, {
        "old_key": old_key,
        "new_key": key_b.key_id,
        "rotated_at": t1,
        "overlap_s": OVERLAP_S,
        "custody": ks.mode,
        "signedBy": "operator key" if policy is not None else "controllers",
    }


def run_scenario(
    devnet: dict[str, Any], progress: bool = True, timeout: float = 60.0, governance: bool = True
) -> dict[str, Any]:
    """Run the scenario against a running devnet (devnet.json content); returns the summary.

    ``timeout`` bounds each wait (NetworkError naming what did not happen); ``governance`` adds the
    DAO revocation step (:func:`run_governance`).
    """
    from ..chain.anchoring import enqueue_direct, read_queue

    nodes = devnet["nodes"]
    first = Path(nodes[0]["dataDir"])
    password = (Path(devnet["dir"]) / "password").read_text().strip()
    t_start = time.monotonic()
    sid, rotation = create_and_rotate(first, password, nodes[0]["api"])
    _step(progress, f"subject {sid[:18]}… created on node1, key {rotation['old_key']}")
    _step(progress, f"rotated to {rotation['new_key']}; {rotation['old_key']} stays valid for {OVERLAP_S // 60} min")
    _step(progress, f"custody {rotation['custody']}: the rotation was signed by the {rotation['signedBy']}")
    head = subject_view(nodes[0]["api"], sid)
    assert head is not None
    rows: dict[str, dict[str, Any]] = {n["name"]: {"node": n["name"], "api": n["api"]} for n in nodes}

    def caught_up(api: str) -> dict[str, Any] | None:
        v = subject_view(api, sid)
        return v if v and v["head"] == head["head"] else None

    for n in nodes:
        view = wait_until(
            functools.partial(caught_up, n["api"]),
            timeout,
            f"{n['name']} to receive the rotation by gossip",
        )
        rows[n["name"]].update(seq=view["seq"], head=view["head"], gossip_s=round(time.monotonic() - t_start, 2))
    _step(progress, f"rotation gossiped to all {len(nodes)} nodes")

    def anchored(n: dict[str, Any], mode: str | None) -> dict[str, Any] | None:
        v = subject_view(n["api"], sid)
        a = (v or {}).get("anchor") or {}
        if mode == "direct":  # the registry's head: another node's later batch root may be the newest anchor
            d = a.get("direct") or {}
            return {**a, "block": d["block"]} if a.get("status") == "equal" and d.get("seq") == a.get("seq") else None
        if a.get("status") == "equal" and (mode is None or a.get("mode") == mode):
            return a
        return None

    for n in nodes:
        a = wait_until(
            functools.partial(anchored, n, None), timeout, f"{n['name']} to see the head anchored in a batch"
        )
        rows[n["name"]].update(
            batch_block=a["block"], batch_mode=a["mode"], batch_s=round(time.monotonic() - t_start, 2)
        )
    _step(progress, "head anchored in a batch root, confirmed by every node's watcher")

    request = enqueue_direct(first, bytes.fromhex(sid[2:]))
    result = wait_until(
        lambda: next((r for r in read_queue(first).results if r.get("id") == request), None),
        timeout,
        "node1 to relay the direct anchor",
    )
    if result["status"] not in ("anchored", "already"):
        raise NetworkError(f"direct anchor not made: {result}")
    for n in nodes:
        a = wait_until(functools.partial(anchored, n, "direct"), timeout, f"{n['name']} to see the direct anchor")
        rows[n["name"]].update(
            direct_block=a["block"], status=a["status"], direct_s=round(time.monotonic() - t_start, 2)
        )
    _step(progress, "head anchored directly (signatures checked by the contract), confirmed by every node")

    # every node with a relayer anchors batches; the first to send a root wins, the others skip it
    batches = []
    for n in nodes:
        chain = httpx.get(n["api"] + "/v1/health", timeout=5).json().get("services", {}).get("chain", {})
        if chain.get("last_batch"):
            batches.append({**chain["last_batch"], "by": n["name"]})
    last_batch = max(batches, key=lambda b: b["block"]) if batches else None
    summary = {
        "subject": sid,
        "registry": devnet.get("registry"),
        "rotation": rotation,
        "nodes": list(rows.values()),
        "last_batch": last_batch,
        "direct": result,
        "elapsed_s": round(time.monotonic() - t_start, 2),
    }
    summary["ok"] = all(r.get("status") == "equal" and r.get("head") == head["head"] for r in rows.values())
    if governance:
        summary["governance"] = run_governance(devnet, progress, timeout)
        summary["ok"] = summary["ok"] and summary["governance"]["ok"]
    summary["elapsed_s"] = round(time.monotonic() - t_start, 2)
    return summary


def _funded_key(rpc_url: str, wei: int) -> bytes:
    """A fresh throwaway private key holding ``wei`` on the devnet's anvil (``anvil_setBalance``)."""
    from ..chain.deploy import _rpc
    from ..core.hashing import address_of_private_key

    key = secrets.token_bytes(32)
    if wei:
        _rpc(rpc_url, "anvil_setBalance", ["0x" + address_of_private_key(key).hex(), hex(wei)], timeout=5)
    return key


def _proposal_on(api: str, subject: str) -> dict[str, Any] | None:
    """The node's indexed proposal about ``subject`` once executed and applied, else None."""
    resp = httpx.get(f"{api}/v1/gov/proposals", params={"subject": subject}, timeout=5)
    items = resp.json()["proposals"] if resp.status_code == 200 else []
    done = [p for p in items if p.get("state") == "Executed" and p.get("applied")]
    return done[0] if done else None


def run_governance(devnet: dict[str, Any], progress: bool = True, timeout: float = 60.0) -> dict[str, Any]:
    """The governance step: :func:`keyreg.gov.scenario.run_governance_revocation` on the devnet, then
    every node's indexed proposal (state, tally, voters); returns the step's summary."""
    from ..gov.scenario import run_governance_revocation

    nodes = devnet["nodes"]
    apis = [n["api"] for n in nodes]
    if len(apis) < 2:
        raise NetworkError("the governance step needs at least 2 nodes (a ballot is relayed by another node)")
    rpc = devnet["rpc"]
    eth = 10**18
    deployer = _funded_key(rpc, 100 * eth)
    # member 0 votes directly (pays gas), member 1 holds no ETH and signs a ballot, member 2 abstains
    members = [_funded_key(rpc, eth), _funded_key(rpc, 0), _funded_key(rpc, 0)]
    result = run_governance_revocation(
        rpc, devnet["registry"], apis, deployer_key=deployer, member_keys=members,
        chain_id=int(devnet.get("chainId", 31337)), voting_period=10, relay_via=1, timeout=timeout,
        progress=lambda text: _step(progress, text),
    )  # fmt: skip
    by_api = {n["api"]: n["name"] for n in nodes}
    rows = []
    for n, verdicts in zip(nodes, result["nodes"], strict=True):
        proposal = wait_until(
            functools.partial(_proposal_on, n["api"], result["subject"]),
            timeout,
            f"{n['name']} to index the executed proposal",
        )
        now, before = verdicts["now"], verdicts["justBefore"]
        revoked = now.get("revoked") or {}
        rows.append(
            {
                "node": n["name"],
                "api": n["api"],
                "proposalState": proposal["state"],
                "votes": proposal["votes"],
                "voters": len(proposal.get("voters", [])),
                "status": now["status"],
                "revokedBy": revoked.get("by"),
                "revokedProposal": revoked.get("proposalId"),
                "since": revoked.get("since"),
                "statusBefore": before["status"],
            }
        )
    _step(progress, f"every node indexed proposal {result['proposalId'][:12]}… as Executed and applied it")
    result["ballotRelayedBy"] = by_api.get(result["ballotRelayedBy"], result["ballotRelayedBy"])
    result["nodeViews"] = rows
    result["ok"] = bool(result["ok"]) and all(
        r["status"] == "revoked"
        and r["revokedBy"] == "governance"
        and r["revokedProposal"] == result["proposalId"]
        and r["since"] == result["effectiveAt"]
        and r["statusBefore"] == "valid"
        and r["votes"].get("for") == 2
        for r in rows
    )
    return result


def print_summary(summary: dict[str, Any]) -> None:
    """The demo's summary tables (fixed width when stdout is not a terminal)."""
    out = report_console()
    r = summary["rotation"]
    table = Table(title=f"subject {summary['subject'][:18]}…: rotation {r['old_key']} -> {r['new_key']}, anchored")
    for col in ("node", "api", "seq", "gossip (s)", "batch block", "direct block", "anchor", "done (s)"):
        table.add_column(col, no_wrap=True)
    for n in summary["nodes"]:
        table.add_row(
            n["node"],
            n["api"],
            str(n.get("seq")),
            str(n.get("gossip_s")),
            str(n.get("batch_block")),
            str(n.get("direct_block")),
            str(n.get("status")),
            str(n.get("direct_s")),
        )
    out.print(table)
    for n in summary["nodes"]:  # every node serves the explorer on its API port (docs/explorer.md)
        out.print(f"explorer {n['node']}: {n['api']}/subjects/{summary['subject']}", highlight=False, soft_wrap=True)
    out.print("(the explorers serve while the devnet runs: `keyreg devnet demo --keep` leaves it up)", highlight=False)
    b = summary.get("last_batch") or {}
    if b:
        out.print(
            f"batch: root {b['root'][:18]}… over {b['count']} heads, block {b['block']}, "
            f"gas {b['gas']} (sent by {b['by']})"
        )
    d = summary["direct"]
    out.print(f"direct: {d['status']} up to seq {d.get('seq')} in {', '.join(d.get('txs', [])) or '-'}")
    g = summary.get("governance")
    if g:
        _print_governance(out, g)
    verdict = "[bold green]devnet demo OK[/]" if summary["ok"] else "[bold red]devnet demo FAILED[/]"
    what = "every node serves the rotated head, anchored in a batch and directly"
    if g:
        what += ", and applies the DAO's revocation"
    out.print(f"{verdict} ({summary['elapsed_s']} s): {what}.", soft_wrap=True)


def _print_governance(out: Console, g: dict[str, Any]) -> None:
    out.print()
    table = Table(
        title=f"governance: DAO {g['dao']['governor'][:12]}… revokes {g['keyId']} of subject {g['subject'][:18]}…"
    )
    for col in (
        "node",
        "proposal",
        "votes for/against/abstain",
        f"{g['keyId']} now",
        "at T-1",
    ):
        table.add_column(col, no_wrap=True)
    for n in g["nodeViews"]:
        v = n["votes"]
        now = n["status"]
        if n["status"] == "revoked":
            now = (
                f"revoked by {n['revokedBy']} since T"
                if n["since"] == g["effectiveAt"]
                else f"revoked since {n['since']}"
            )
        table.add_row(
            n["node"],
            n["proposalState"],
            f"{v.get('for')}/{v.get('against')}/{v.get('abstain')}",
            now,
            n["statusBefore"],
        )
    out.print(table)
    ballot = g["ballot"]
    voter = ballot.get("ballot", {}).get("voter", "?")
    lines = [
        ("proposal", g["proposalId"]),
        ("revoke", f"{g['keyId']} from T = {g['effectiveAt']} ({_utc(g['effectiveAt'])})"),
        ("vote 1", f"direct: {g['directVote']['voter']} (pays gas), tx {_short(g['directVote']['txHash'])}"),
        (
            "vote 2",
            f"by signature: {voter} (no ETH), relayed by {g['ballotRelayedBy']}, tx {_short(ballot.get('txHash'))}",
        ),
        ("executed", f"block {g['executeBlock']}, tx {_short(g['executeTx'])}"),
    ]
    for label, text in lines:
        out.print(f"{label:<9} {text}", highlight=False, soft_wrap=True)


def _short(tx: str | None) -> str:
    return f"{tx[:18]}…" if tx else "-"


def _utc(t: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))
