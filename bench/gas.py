"""Benchmark: gas per anchoring operation, KeyRegistry vs ERC-1056 (did:ethr's EthereumDIDRegistry).

    python bench/gas.py            # 10 samples per figure (median), batches at 1, 100, 1,000 heads
    python bench/gas.py --quick    # 1 sample per figure (gas is deterministic up to calldata bytes)

In one anvil run (spawned from contracts/node_modules, killed by PID) it deploys our registry and
ERC-1056 from npm ``ethr-did-registry`` and measures receipts' gasUsed:
- direct anchoring (the contract verifies the controllers' EIP-712 signatures): inception and update
  with 1-of-1 and 2-of-3 controllers, a revocation, a rotation (1-of-1 and 2-of-3), and
  ``anchorEvents`` with 10 updates in one transaction (per event);
- protocol v2 (ADR 0028): an inception naming a 1-of-1 operator set, an update signed by the
  operators (1-of-1 and 2-of-3; issue 16's target is <= 60,000 for 1-of-1), a delegation, and a
  ``supersede`` (controllers replacing an operator-signed head);
- batch anchoring: one ``anchorBatch`` transaction per sparse-Merkle root over 1, 100 and 1,000 heads
  (per transaction and per event); the very first batch also creates the batch counter and is
  reported apart;
- ERC-1056: ``changeOwner``, ``addDelegate``, ``setAttribute`` (a 32-byte key as the value), each
  on a fresh identity and repeated on the same identity.
Events are built and signed with keyreg.core.builder. The last stdout line is one JSON object (also
written to bench/results/gas.json unless --no-save).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from web3 import Web3

from keyreg.chain import artifacts
from keyreg.chain.deploy import (
    ANVIL_CHAIN_ID,
    anvil_binary,
    call_for,
    connect,
    deploy,
    deploy_registry,
    event_input,
    running_anvil,
    supersede_call,
)
from keyreg.core import builder
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import address_of_private_key, keccak
from keyreg.core.merkle import SparseMerkleTree
from keyreg.core.records import NO_OPERATORS, Domain, PublishedKey, SignedEvent

RESULTS = Path(__file__).resolve().parent / "results"
T0 = 1_735_689_600
TARGET_DIRECT_UPDATE = 60_000
TARGET_OPERATOR_UPDATE = 60_000
DAY = 86_400
TARGET_BATCH_PER_EVENT_1000 = 300


def _key(tag: bytes, key_id: str) -> PublishedKey:
    return PublishedKey(key_id, "Ed25519", keccak(tag), ("sign",), T0, 0)


class Bench:
    """One anvil, both registries, and the send/measure plumbing."""

    def __init__(self, w3: Web3) -> None:
        self.w3 = w3
        self.relayer = w3.eth.accounts[0]
        self.registry = deploy_registry(w3)
        self.domain = Domain(ANVIL_CHAIN_ID, bytes.fromhex(self.registry.address[2:]))
        self.erc1056 = deploy(w3, artifacts.erc1056())
        self.counter = 0

    def send(self, fn: Any, sender: str | None = None) -> int:
        """Send a call (fixed gas limit, no estimate); returns gasUsed, failing loudly on a revert."""
        tx_hash = fn.transact({"from": sender or self.relayer, "gas": 5_000_000})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=10)
        if receipt["status"] != 1:
            raise RuntimeError(f"{fn.fn_name} reverted")
        return int(receipt["gasUsed"])

    def anchor(
        self,
        signed: SignedEvent,
        controllers: Sequence[bytes] | None = None,
        threshold: int | None = None,
        by_operators: bool = False,
    ) -> int:
        name, args = call_for(signed, controllers, threshold, by_operators=by_operators)
        return self.send(getattr(self.registry.functions, name)(*args))

    # -- our registry ------------------------------------------------------------------------

    def subject(self, n: int, threshold: int, operators: int = 0, op_threshold: int = 1) -> dict[str, Any]:
        """Incept a fresh subject with n controllers (and an operator set of ``operators``
        addresses, if any); returns its bookkeeping and the inception gas."""
        self.counter += 1
        tag = b"gas-%d" % self.counter
        current = [keccak(tag + b"/c%d" % i) for i in range(n)]
        nxt = [keccak(tag + b"/n%d" % i) for i in range(n)]
        op_secrets = sorted((keccak(tag + b"/op%d" % i) for i in range(operators)), key=address_of_private_key)
        ops = NO_OPERATORS
        if operators:
            ops = builder.operator_set([address_of_private_key(x) for x in op_secrets], op_threshold, ["sign"], DAY,
                                       1024)  # fmt: skip
        inc = builder.inception(
            T0,
            builder.controller_set(current),
            threshold,
            builder.controller_set(nxt),
            threshold,
            keys=[_key(tag, "key-1")],
            metadata=f"service {self.counter}",
            operators=ops,
        )
        signed = builder.sign_event(self.domain, inc, current[:threshold])
        gas = self.anchor(signed)
        digest = event_digest(self.domain, inc)
        return {
            "tag": tag,
            "current": current,
            "next": nxt,
            "threshold": threshold,
            "subject": digest,
            "seq": 0,
            "head": digest,
            "inception_gas": gas,
            "operators": ops,
            "op_secrets": op_secrets,
        }

    def operator_update_event(self, s: dict[str, Any], key_id: str) -> SignedEvent:
        ts = T0 + 60 * (s["seq"] + 1)
        key = PublishedKey(key_id, "Ed25519", keccak(s["tag"] + key_id.encode()), ("sign",), ts, ts + DAY)
        ev = builder.update(s["subject"], s["seq"] + 1, s["head"], ts, publish=[key])
        return builder.sign_event(self.domain, ev, s["op_secrets"][: s["operators"].threshold])

    def operator_update(self, s: dict[str, Any]) -> int:
        """An update signed by the operators in force (anchorOperatorUpdate)."""
        signed = self.operator_update_event(s, f"op-key-{s['seq'] + 2}")
        gas = self.anchor(signed, s["operators"].operators, s["operators"].threshold, by_operators=True)
        self.advance(s, signed)
        return gas

    def delegation(self, s: dict[str, Any]) -> int:
        """Controllers replace the operator set with a fresh 1-of-1 set."""
        self.counter += 1
        op = keccak(b"gas-op-%d" % self.counter)
        ops = builder.operator_set([address_of_private_key(op)], 1, ["sign"], DAY, 1024)
        ev = builder.delegation(s["subject"], s["seq"] + 1, s["head"], T0 + 60 * (s["seq"] + 1), ops)
        signed = builder.sign_event(self.domain, ev, s["current"][: s["threshold"]])
        gas = self.anchor(signed, builder.controller_set(s["current"]), s["threshold"])
        s["operators"], s["op_secrets"] = ops, [op]
        self.advance(s, signed)
        return gas

    def supersede(self, s: dict[str, Any]) -> int:
        """The operators anchor an update; the controllers replace it at the same seq (supersede)."""
        prev, seq = s["head"], s["seq"]
        rogue = self.operator_update_event(s, f"rogue-{seq}")
        self.anchor(rogue, s["operators"].operators, s["operators"].threshold, by_operators=True)
        ev = builder.update(s["subject"], seq + 1, prev, T0 + 60 * (seq + 1) + 1, retire=[("key-1", T0 + 1)])
        fix = builder.sign_event(self.domain, ev, s["current"][: s["threshold"]])
        name, args = supersede_call(fix, rogue, builder.controller_set(s["current"]), s["threshold"])
        gas = self.send(getattr(self.registry.functions, name)(*args))
        self.advance(s, fix)
        return gas

    def update_event(self, s: dict[str, Any], key_id: str = "key-2") -> SignedEvent:
        ev = builder.update(
            s["subject"],
            s["seq"] + 1,
            s["head"],
            T0 + 60 * (s["seq"] + 1),
            publish=[_key(s["tag"] + key_id.encode(), key_id)],
        )
        return builder.sign_event(self.domain, ev, s["current"][: s["threshold"]])

    def advance(self, s: dict[str, Any], signed: SignedEvent) -> None:
        s["seq"], s["head"] = signed.event.seq, event_digest(self.domain, signed.event)

    def update(self, s: dict[str, Any]) -> int:
        signed = self.update_event(s, f"key-{s['seq'] + 2}")
        gas = self.anchor(signed, builder.controller_set(s["current"]), s["threshold"])
        self.advance(s, signed)
        return gas

    def revocation(self, s: dict[str, Any]) -> int:
        ev = builder.revocation(
            s["subject"],
            s["seq"] + 1,
            s["head"],
            T0 + 60 * (s["seq"] + 1),
            "key-1",
            T0 + 60 * (s["seq"] + 1),
            "compromised",
        )
        signed = builder.sign_event(self.domain, ev, s["current"][: s["threshold"]])
        gas = self.anchor(signed, builder.controller_set(s["current"]), s["threshold"])
        self.advance(s, signed)
        return gas

    def rotation(self, s: dict[str, Any]) -> int:
        following = [keccak(x) for x in s["next"]]
        ev = builder.rotation(
            s["subject"],
            s["seq"] + 1,
            s["head"],
            T0 + 60 * (s["seq"] + 1),
            builder.controller_set(s["next"]),
            s["threshold"],
            builder.controller_set(following),
            s["threshold"],
        )
        signed = builder.sign_event(self.domain, ev, s["next"][: s["threshold"]])
        gas = self.anchor(signed)
        s["current"], s["next"] = s["next"], following
        self.advance(s, signed)
        return gas

    def anchor_events(self, subjects: list[dict[str, Any]]) -> int:
        """One update per subject, all in one anchorEvents transaction."""
        items = []
        for s in subjects:
            signed = self.update_event(s, f"key-{s['seq'] + 2}")
            items.append(event_input(signed, builder.controller_set(s["current"]), s["threshold"]))
            self.advance(s, signed)
        return self.send(self.registry.functions.anchorEvents(items))

    def batch(self, heads: int) -> int:
        self.counter += 1
        tree = SparseMerkleTree()
        for i in range(heads):
            tree.set(keccak(b"batch-%d-%d" % (self.counter, i)), i % 7, keccak(b"head-%d-%d" % (self.counter, i)))
        return self.send(self.registry.functions.anchorBatch(tree.root, heads))


def median(fn: Callable[[], int], samples: int) -> int:
    return int(statistics.median(fn() for _ in range(samples)))


def measure(bench: Bench, samples: int) -> dict[str, Any]:
    r: dict[str, Any] = {}
    one = [bench.subject(1, 1) for _ in range(samples)]
    three = [bench.subject(3, 2) for _ in range(samples)]
    r["direct_inception_gas"] = int(statistics.median(s["inception_gas"] for s in one))
    r["direct_inception_2of3_gas"] = int(statistics.median(s["inception_gas"] for s in three))
    r["direct_update_gas"] = int(statistics.median(bench.update(s) for s in one))
    r["direct_update_2of3_gas"] = int(statistics.median(bench.update(s) for s in three))
    r["direct_revocation_gas"] = int(statistics.median(bench.revocation(s) for s in one))
    fresh_one = [bench.subject(1, 1) for _ in range(samples)]
    r["rotation_gas"] = int(statistics.median(bench.rotation(s) for s in fresh_one))
    r["rotation_2of3_gas"] = int(statistics.median(bench.rotation(s) for s in three))
    group = [bench.subject(1, 1) for _ in range(10)]
    for s in group:
        bench.update(s)  # steady state: not the first update of each subject
    r["anchor_events_10_updates_gas"] = bench.anchor_events(group)
    r["anchor_events_gas_per_event"] = r["anchor_events_10_updates_gas"] // 10

    # Protocol v2: operator sets.
    ops_one = [bench.subject(1, 1, operators=1) for _ in range(samples)]
    ops_three = [bench.subject(1, 1, operators=3, op_threshold=2) for _ in range(samples)]
    r["inception_with_operators_gas"] = int(statistics.median(s["inception_gas"] for s in ops_one))
    r["operator_update_gas"] = int(statistics.median(bench.operator_update(s) for s in ops_one))
    r["operator_update_2of3_gas"] = int(statistics.median(bench.operator_update(s) for s in ops_three))
    r["delegation_gas"] = int(statistics.median(bench.delegation(s) for s in ops_one))
    r["supersede_gas"] = int(statistics.median(bench.supersede(s) for s in ops_one))

    r["batch_first_gas"] = bench.batch(1)  # also creates batchCount (zero -> nonzero)
    for heads in (1, 100, 1000):
        gas = median(lambda h=heads: bench.batch(h), samples)
        r[f"batch_gas_per_tx_{heads}"] = gas
        r[f"batch_gas_per_event_{heads}"] = round(gas / heads, 2)

    f = bench.erc1056.functions
    owners = bench.w3.eth.accounts[1:]
    delegate_type = b"veriKey".ljust(32, b"\x00")
    attr = b"did/pub/Ed25519/veriKey/hex".ljust(32, b"\x00")

    def erc(fn_first: Callable[[str], Any], fn_again: Callable[[str], Any], identity: str) -> tuple[int, int]:
        return bench.send(fn_first(identity), identity), bench.send(fn_again(identity), identity)

    adds, sets, changes = [], [], []
    for i in range(samples):
        a, b, c = owners[(3 * i) % len(owners)], owners[(3 * i + 1) % len(owners)], owners[(3 * i + 2) % len(owners)]
        d1 = Web3.to_checksum_address(keccak(b"d1-%d" % i)[:20])
        d2 = Web3.to_checksum_address(keccak(b"d2-%d" % i)[:20])
        adds.append(
            erc(
                lambda x, d=d1: f.addDelegate(x, delegate_type, d, 86400),
                lambda x, d=d2: f.addDelegate(x, delegate_type, d, 86400),
                a,
            )
        )
        v1, v2 = keccak(b"v1-%d" % i), keccak(b"v2-%d" % i)
        sets.append(
            erc(lambda x, v=v1: f.setAttribute(x, attr, v, 86400), lambda x, v=v2: f.setAttribute(x, attr, v, 86400), b)
        )
        n1 = Web3.to_checksum_address(keccak(b"o1-%d" % i)[:20])
        changes.append((bench.send(f.changeOwner(c, n1), c), 0))
    r["erc1056_add_delegate_gas"] = int(statistics.median(x for x, _ in adds))
    r["erc1056_add_delegate_repeat_gas"] = int(statistics.median(y for _, y in adds))
    r["erc1056_set_attribute_gas"] = int(statistics.median(x for x, _ in sets))
    r["erc1056_set_attribute_repeat_gas"] = int(statistics.median(y for _, y in sets))
    r["erc1056_change_owner_gas"] = int(statistics.median(x for x, _ in changes))
    return r


def anvil_version() -> str:
    try:
        out = subprocess.run([str(anvil_binary()), "--version"], capture_output=True, text=True, timeout=10, check=True)
        return out.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def table(r: dict[str, Any]) -> str:
    rows = [
        ("KeyRegistry direct: inception 1-of-1", r["direct_inception_gas"], ""),
        ("KeyRegistry direct: inception 2-of-3", r["direct_inception_2of3_gas"], ""),
        ("KeyRegistry direct: update 1-of-1", r["direct_update_gas"], f"target <= {TARGET_DIRECT_UPDATE:,}"),
        ("KeyRegistry direct: update 2-of-3", r["direct_update_2of3_gas"], ""),
        ("KeyRegistry direct: revocation 1-of-1", r["direct_revocation_gas"], ""),
        ("KeyRegistry direct: rotation 1-of-1", r["rotation_gas"], ""),
        ("KeyRegistry direct: rotation 2-of-3", r["rotation_2of3_gas"], ""),
        (
            "KeyRegistry anchorEvents: 10 updates / tx",
            r["anchor_events_10_updates_gas"],
            f"{r['anchor_events_gas_per_event']:,} per event",
        ),
        ("KeyRegistry v2: inception + 1-of-1 operators", r["inception_with_operators_gas"], ""),
        ("KeyRegistry v2: operator update 1-of-1", r["operator_update_gas"], f"target <= {TARGET_OPERATOR_UPDATE:,}"),
        ("KeyRegistry v2: operator update 2-of-3", r["operator_update_2of3_gas"], ""),
        ("KeyRegistry v2: delegation 1-of-1", r["delegation_gas"], ""),
        ("KeyRegistry v2: supersede (controller update)", r["supersede_gas"], "replaces an operator head"),
        ("KeyRegistry batch: very first root", r["batch_first_gas"], "creates the batch counter"),
    ]
    for h in (1, 100, 1000):
        note = f"{r[f'batch_gas_per_event_{h}']:,} per event"
        if h == 1000:
            note += f" (target <= {TARGET_BATCH_PER_EVENT_1000})"
        rows.append((f"KeyRegistry batch: root over {h:,} heads", r[f"batch_gas_per_tx_{h}"], note))
    rows += [
        ("ERC-1056 changeOwner (fresh identity)", r["erc1056_change_owner_gas"], ""),
        (
            "ERC-1056 addDelegate (fresh / repeat)",
            r["erc1056_add_delegate_gas"],
            f"repeat {r['erc1056_add_delegate_repeat_gas']:,}",
        ),
        (
            "ERC-1056 setAttribute (fresh / repeat)",
            r["erc1056_set_attribute_gas"],
            f"repeat {r['erc1056_set_attribute_repeat_gas']:,}",
        ),
    ]
    width = max(len(n) for n, _, _ in rows)
    lines = [f"{'operation':<{width}}  {'gas':>9}  notes", "-" * (width + 40)]
    lines += [f"{n:<{width}}  {g:>9,}  {note}" for n, g, note in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 sample per figure (CI)")
    parser.add_argument("--samples", type=int, default=None, help="samples per figure (default 10, --quick 1)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/gas.json")
    args = parser.parse_args()
    samples = args.samples or (1 if args.quick else 10)

    started = time.perf_counter()
    # Each ERC-1056 sample needs three fresh identities (unlocked anvil accounts) plus the relayer.
    with running_anvil(extra_args=["--accounts", str(max(10, 3 * samples + 1))]) as anvil:
        hardfork = anvil.rpc("anvil_nodeInfo").get("hardFork", "unknown")
        bench = Bench(connect(anvil.url))
        r = measure(bench, samples)
    elapsed = time.perf_counter() - started

    r["direct_update_vs_erc1056_add_delegate"] = round(r["direct_update_gas"] / r["erc1056_add_delegate_gas"], 3)
    r["direct_update_vs_erc1056_set_attribute"] = round(r["direct_update_gas"] / r["erc1056_set_attribute_gas"], 3)
    r["rotation_vs_erc1056_change_owner"] = round(r["rotation_gas"] / r["erc1056_change_owner_gas"], 3)
    r["batch_1000_per_event_vs_erc1056_add_delegate"] = round(
        r["batch_gas_per_event_1000"] / r["erc1056_add_delegate_gas"], 5
    )
    r["targets_met"] = (
        r["direct_update_gas"] <= TARGET_DIRECT_UPDATE
        and r["operator_update_gas"] <= TARGET_OPERATOR_UPDATE
        and r["batch_gas_per_event_1000"] <= TARGET_BATCH_PER_EVENT_1000
    )
    registry = artifacts.key_registry()
    r["run"] = {
        "command": "python bench/gas.py" + (" --quick" if args.quick else ""),
        "samples_per_figure": samples,
        "statistic": "median gasUsed of the receipts",
        "anvil": anvil_version(),
        "hardfork": hardfork,
        "chain_id": ANVIL_CHAIN_ID,
        "solc": registry.compiler,
        "optimizer": "enabled, runs 10000, viaIR, evm cancun",
        "erc1056": "npm ethr-did-registry 1.3.0 artifact",
        "python": platform.python_version(),
        "seconds": round(elapsed, 2),
    }

    print(table(r))
    print(f"\n{samples} sample(s) per figure, {elapsed:.1f} s; targets met: {r['targets_met']}")
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "gas.json").write_text(json.dumps(r, indent=1) + "\n")
    print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
