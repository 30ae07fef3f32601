"""``keyreg export``: build a proof-carrying bundle from a node's store and an Ethereum RPC.

The exporter is the untrusted side: it gathers the subjects' logs, duplicity evidence and
governance records from the store, asks the chain (``eth_getProof`` at one block) for the registry
account and the storage slots the verifier will read, and writes the bundle (docs/bundle.md).
Nothing it writes is trusted by :mod:`keyreg.verify`; it only has to be complete.

Chain access goes through the small :class:`ProofSource` seam; :class:`RpcProofSource` speaks
JSON-RPC over HTTP with bounded timeouts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx

from .core.codec import loads_strict
from .core.errors import ChainError, ConfigError, MalformedEvent
from .core.hashing import keccak
from .core.merkle import SparseMerkleTree
from .core.records import ZERO32, Domain
from .store.base import Store
from .verify import layout, rlp
from .verify.bundle import (
    BatchAnchor,
    Bundle,
    Checkpoint,
    DirectAnchor,
    EvidenceEntry,
    GovernanceEntry,
    SubjectEntry,
    encode_bundle,
)

SLOTS_PER_CALL = 256
GENERATOR = "keyreg-export/1"

# Header fields in RLP order; the optional tail appeared with London, Shanghai, Cancun, Prague.
_HEADER_FIELDS = (
    "parentHash",
    "sha3Uncles",
    "miner",
    "stateRoot",
    "transactionsRoot",
    "receiptsRoot",
    "logsBloom",
    "difficulty",
    "number",
    "gasLimit",
    "gasUsed",
    "timestamp",
    "extraData",
    "mixHash",
    "nonce",
)
_OPTIONAL_TAIL = (
    "baseFeePerGas",
    "withdrawalsRoot",
    "blobGasUsed",
    "excessBlobGas",
    "parentBeaconBlockRoot",
    "requestsHash",
)
_QUANTITIES = {
    "difficulty",
    "number",
    "gasLimit",
    "gasUsed",
    "timestamp",
    "baseFeePerGas",
    "blobGasUsed",
    "excessBlobGas",
}


def _unhex(s: str) -> bytes:
    return bytes.fromhex(s[2:] if s.startswith("0x") else s)


def header_rlp(block: dict[str, Any]) -> bytes:
    """The RLP header of a JSON-RPC block; raises ChainError unless it hashes to the block's hash."""
    fields: list[rlp.Item] = []
    for name in _HEADER_FIELDS:
        v = block[name]
        fields.append(rlp.encode_uint(int(v, 16)) if name in _QUANTITIES else _unhex(v))
    for name in _OPTIONAL_TAIL:
        if block.get(name) is None:
            break
        v = block[name]
        fields.append(rlp.encode_uint(int(v, 16)) if name in _QUANTITIES else _unhex(v))
    raw = rlp.encode(fields)
    if keccak(raw) != _unhex(block["hash"]):
        raise ChainError(
            f"cannot rebuild the header of block {int(block['number'], 16)} (unknown fork fields?): "
            "its RLP does not hash to the block hash"
        )
    return raw


class ProofSource(Protocol):
    """What the exporter needs from a chain."""

    def chain_id(self) -> int: ...

    def block(self, ref: int | str) -> dict[str, Any]:
        """The JSON-RPC block object (without transactions)."""
        ...

    def get_proof(self, address: bytes, slots: Sequence[int], block_number: int) -> dict[str, Any]:
        """The JSON-RPC eth_getProof result."""
        ...


class RpcProofSource:
    """JSON-RPC over HTTP (any node that serves eth_getProof at the block: anvil, geth, reth, ...)."""

    def __init__(self, url: str, timeout_s: float = 30.0) -> None:
        self.url = url
        self._http = httpx.Client(timeout=timeout_s)
        self._id = 0

    def _call(self, method: str, params: list[Any]) -> Any:
        self._id += 1
        try:
            answer = self._http.post(
                self.url, json={"jsonrpc": "2.0", "id": self._id, "method": method, "params": params}
            )
            body = loads_strict(answer.content)  # nesting bounded before parsing (an RPC is untrusted)
        except (httpx.HTTPError, ValueError, MalformedEvent) as exc:
            raise ChainError(f"RPC {method} failed: {exc.__class__.__name__}: {exc}") from None
        if "error" in body:
            raise ChainError(f"RPC {method} refused: {body['error'].get('message', body['error'])}")
        return body["result"]

    def chain_id(self) -> int:
        return int(self._call("eth_chainId", []), 16)

    def block(self, ref: int | str) -> dict[str, Any]:
        tag = ref if isinstance(ref, str) else hex(ref)
        result = self._call("eth_getBlockByNumber", [tag, False])
        if result is None:
            raise ChainError(f"block {ref} does not exist")
        return dict(result)

    def get_proof(self, address: bytes, slots: Sequence[int], block_number: int) -> dict[str, Any]:
        keys = [f"0x{s:064x}" for s in slots]
        return dict(self._call("eth_getProof", ["0x" + address.hex(), keys, hex(block_number)]))

    def close(self) -> None:
        self._http.close()


@dataclass
class _Proofs:
    nodes: set[bytes]
    values: dict[int, int]
    storage_hash: bytes | None = None


def _prove(
    source: ProofSource, address: bytes, slots: Iterable[int], block_number: int, tick: Callable[[int], None]
) -> _Proofs:
    out = _Proofs(set(), {})
    wanted = sorted(set(slots))
    for i in range(0, max(len(wanted), 1), SLOTS_PER_CALL):
        chunk = wanted[i : i + SLOTS_PER_CALL]
        p = source.get_proof(address, chunk, block_number)
        out.nodes.update(_unhex(n) for n in p["accountProof"])
        storage_hash = _unhex(p["storageHash"])
        if out.storage_hash not in (None, storage_hash):
            raise ChainError("the registry's storage root changed between proof calls at one block")
        out.storage_hash = storage_hash
        for sp in p["storageProof"]:
            out.values[int(sp["key"], 16)] = int(sp["value"], 16)
            out.nodes.update(_unhex(n) for n in sp["proof"])
        tick(len(chunk))
    return out


def _governance_entries(
    subject: bytes, governor: bytes, records: Sequence[Any], proven: dict[str, int]
) -> tuple[GovernanceEntry, ...]:
    """One record per key id with a proven revocation, taken from the store when it matches."""
    out = []
    for kid, effective in sorted(proven.items()):
        if not effective:
            continue
        match = [g for g in records if g.key_id == kid and g.effective_at == effective]
        if match:
            g = match[0]
            out.append(
                GovernanceEntry(
                    kid, effective, g.reason_hash, g.proposal_id, g.governor, g.block_number, g.tx_hash or ZERO32, 0
                )
            )
        else:  # on-chain but not yet indexed by this node: the storage proof alone carries it
            out.append(GovernanceEntry(kid, effective, ZERO32, 0, governor, 0, ZERO32, 0))
    return tuple(out)


def build_bundle(
    store: Store,
    source: ProofSource,
    domain: Domain,
    block: int | str = "latest",
    subjects: Sequence[bytes] | None = None,
    trees: Sequence[SparseMerkleTree] = (),
    progress: Callable[[str, int, int], None] | None = None,
) -> Bundle:
    """Gather everything a verifier needs about ``subjects`` (default: all) at ``block``.

    ``trees`` are sparse Merkle trees of heads whose roots may be batch-anchored; the tree of the
    store's current heads is always tried. ``progress(stage, done, total)`` reports as it goes.
    """
    report = progress or (lambda stage, done, total: None)
    chain_id = source.chain_id()
    if chain_id != domain.chain_id:
        raise ConfigError(f"the RPC serves chain {chain_id}, the node's network is chain {domain.chain_id}")
    blk = source.block(block)
    number, block_hash, timestamp = int(blk["number"], 16), _unhex(blk["hash"]), int(blk["timestamp"], 16)
    header = header_rlp(blk)

    states = {state.subject: state for state, _ in store.load_states()}
    chosen = sorted(states) if subjects is None else sorted(set(subjects))
    for sid in chosen:
        if sid not in states:
            raise ConfigError(f"the node holds no subject 0x{sid.hex()}")

    current = SparseMerkleTree()
    for state in states.values():
        current.set(state.subject, state.seq, state.head)
    candidate_trees = [current, *trees]

    logs: dict[bytes, Any] = {}
    slots: dict[bytes, list[int]] = {}
    gov_ids: dict[bytes, list[str]] = {}
    for i, sid in enumerate(chosen):
        events = store.log(sid)
        evidence = [EvidenceEntry(d.seq, d.first, d.second) for d in store.evidence(sid)]
        governance = store.governance_revocations(sid)
        logs[sid] = (events, evidence, governance)
        seq_slot, digest_slot, _ = layout.head_slots(sid)
        slots[sid] = [seq_slot, digest_slot]
        if layout.names_governor(events):
            extra = [s for e in evidence for s in (e.first, e.second)]
            gov_ids[sid] = layout.governance_key_ids([*events, *extra], (g.key_id for g in governance))
            slots[sid] += [layout.governance_slot(sid, k) for k in gov_ids[sid]]
        report("reading the store", i + 1, len(chosen))

    roots = {t.root for t in candidate_trees if len(t)}
    root_slots = {layout.batch_slot(r): r for r in roots}
    all_slots = [s for v in slots.values() for s in v] + list(root_slots)
    done = 0

    def tick(n: int) -> None:
        nonlocal done
        done += n
        report("fetching proofs", done, len(all_slots))

    proofs = _prove(source, domain.verifying_contract, all_slots, number, tick)
    if proofs.storage_hash is None:
        raise ChainError("eth_getProof returned no storage hash")

    # The newest anchored tree that holds a subject gives its batch proof.
    anchored = sorted(
        ((layout.unpack_batch_block(proofs.values[s]), r) for s, r in root_slots.items() if proofs.values.get(s)),
        reverse=True,
    )
    trees_by_root = {t.root: t for t in candidate_trees}
    needed_nodes = set(proofs.nodes)
    used_roots: set[bytes] = set()
    entries = []
    for sid in chosen:
        events, evidence, governance = logs[sid]
        seq_slot, digest_slot, _ = layout.head_slots(sid)
        anchor = DirectAnchor(
            layout.unpack_seq(proofs.values.get(seq_slot, 0)), proofs.values.get(digest_slot, 0).to_bytes(32, "big")
        )
        batch = None
        for _, root in anchored:
            tree = trees_by_root[root]
            head = tree.get(sid)
            if head is not None:
                batch = BatchAnchor(root, head[0], head[1], tree.prove(sid).siblings)
                used_roots.add(root)
                break
        gov: tuple[GovernanceEntry, ...] = ()
        if sid in gov_ids:
            proven = {
                k: layout.unpack_effective_at(proofs.values.get(layout.governance_slot(sid, k), 0))
                for k in gov_ids[sid]
            }
            # A record the node has not indexed yet names the governor in force (else the last one
            # named): the verifier accepts any governor an establishment event named (protocol 8.3).
            st = states[sid]
            named = st.governor if any(st.governor) else (st.governors[-1] if st.governors else st.governor)
            gov = _governance_entries(sid, named, governance, proven)
        entries.append(SubjectEntry(sid, tuple(events), tuple(evidence), gov, anchor, batch))

    if used_roots != roots:
        # Prove only the roots that are used (the verifier refuses stray proof nodes): re-fetch
        # proofs of the wanted slots alone.
        keep = [s for v in slots.values() for s in v] + [layout.batch_slot(r) for r in used_roots]
        needed_nodes = _prove(source, domain.verifying_contract, keep, number, lambda n: None).nodes

    return Bundle(
        domain=domain,
        checkpoint=Checkpoint(number, block_hash, timestamp, header),
        proof_nodes=tuple(sorted(needed_nodes)),
        batches=tuple(sorted(used_roots)),
        subjects=tuple(entries),
        created_at=int(time.time()),
        generator=GENERATOR,
    )


def export_from_data_dir(
    data_dir: Path,
    rpc: str,
    out: Path,
    block: int | str = "latest",
    subjects: Sequence[str] | None = None,
    compress: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """The ``keyreg export`` command: open the node's store, build, write; returns a summary."""
    from .config import load_config
    from .store.sql import SqlStore

    config = load_config(data_dir)
    wanted = None
    if subjects is not None:
        try:
            wanted = [bytes.fromhex(s.removeprefix("0x")) for s in subjects]
        except ValueError:
            raise ConfigError("--subject must be a 0x-hex subject id") from None
        if any(len(s) != 32 for s in wanted):
            raise ConfigError("--subject must be a 32-byte subject id")
    store = SqlStore(config.store_url, limits=config.limits)
    source = RpcProofSource(rpc, timeout_s=max(config.chain.rpc_timeout_s, 30.0))
    try:
        if progress:
            from rich.progress import Progress

            with Progress(transient=True) as bar:
                tasks: dict[str, Any] = {}

                def report(stage: str, done: int, total: int) -> None:
                    if stage not in tasks:
                        tasks[stage] = bar.add_task(stage, total=total)
                    bar.update(tasks[stage], completed=done, total=total)

                bundle = build_bundle(store, source, config.domain, block, wanted, progress=report)
        else:
            bundle = build_bundle(store, source, config.domain, block, wanted)
    finally:
        source.close()
        store.close()
    data = encode_bundle(bundle, compress=compress)
    out.write_bytes(data)
    return {
        "path": str(out),
        "bytes": len(data),
        "subjects": len(bundle.subjects),
        "events": sum(len(s.events) for s in bundle.subjects),
        "block": bundle.checkpoint.number,
        "blockHash": "0x" + bundle.checkpoint.hash.hex(),
        "timestamp": bundle.checkpoint.timestamp,
        "batches": len(bundle.batches),
    }
