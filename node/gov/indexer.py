"""The governance indexer: proposals, votes and tallies of the DAOs that subjects named.

Which DAOs: every non-zero ``governor`` in the registry's subject states (named at inception).
A named address is either a keyreg governor or the timelock of one; a timelock is resolved to its
governor through its ``RoleGranted(PROPOSER_ROLE, governor)`` events.

Each poll (blocking; the node runs it in a worker thread):
1. resolve newly named addresses;
2. ``eth_getLogs`` over the governors for ProposalCreated / VoteCast / VoteCastWithParams /
   ProposalQueued / ProposalExecuted / ProposalCanceled since the last scanned block;
3. refresh state and tallies of the proposals not yet final from the governor's views
   (``state``, ``proposalVotes``, ``quorum``), which are authoritative: logs only discover
   proposals and individual votes, so a reorg can at worst leave a stale vote row until the
   proposal's views are re-read.

Revocations themselves are not applied here: the chain watcher (node.chain.watcher) feeds the
registry's ``GovernanceRevoked`` events, with confirmations, into ``Registry.add_governance_revocations``;
the indexer only links each executed proposal to the revocation the registry recorded.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from ..chain.artifacts import load
from ..core.records import ZERO20
from ..registry import Registry
from .contracts import FINAL_STATES, SUPPORT_NAMES, TIMELOCK, TIMELOCK_GOVERNOR, Governance, call, decode_revocation

_EVENTS = (
    "ProposalCreated",
    "VoteCast",
    "VoteCastWithParams",
    "ProposalQueued",
    "ProposalExecuted",
    "ProposalCanceled",
)


@dataclass
class VoteRecord:
    voter: str
    support: int
    weight: int
    reason: str
    block: int
    tx_hash: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "voter": self.voter,
            "support": SUPPORT_NAMES.get(self.support, str(self.support)),
            "weight": self.weight,
            "reason": self.reason,
            "block": self.block,
            "txHash": self.tx_hash,
        }


@dataclass
class ProposalRecord:
    """One proposal as this node knows it."""

    governor: str
    executor: str
    proposal_id: int
    proposer: str
    description: str
    revocations: list[dict[str, Any]]
    vote_start: int
    vote_end: int
    created_block: int
    created_tx: str
    state: str = "Pending"
    votes: dict[str, int] = field(default_factory=lambda: {"for": 0, "against": 0, "abstain": 0})
    quorum: int | None = None
    voters: dict[str, VoteRecord] = field(default_factory=dict)
    eta: int | None = None
    queued_tx: str | None = None
    executed_block: int | None = None
    executed_tx: str | None = None

    def to_dict(self, applied: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "governor": self.governor,
            "executor": self.executor,
            "proposalId": str(self.proposal_id),
            "proposer": self.proposer,
            "description": self.description,
            "revocations": self.revocations,
            "state": self.state,
            "votes": dict(self.votes),
            "quorum": self.quorum,
            "voteStart": self.vote_start,
            "voteEnd": self.vote_end,
            "createdBlock": self.created_block,
            "createdTx": self.created_tx,
            "voters": [v.to_dict() for v in self.voters.values()],
            "eta": self.eta,
            "queuedTx": self.queued_tx,
            "executedBlock": self.executed_block,
            "executedTx": self.executed_tx,
            "applied": applied or [],
        }


class GovernanceIndexer:
    """Keeps :attr:`proposals` up to date for the governors named by known subjects."""

    def __init__(self, w3: Web3, registry: Registry, start_block: int = 0, max_range: int = 5000) -> None:
        self.w3 = w3
        self.registry = registry
        self.start_block = start_block
        self.max_range = max_range
        self.scanned = start_block - 1
        # named address (lowercase) -> governor address (checksummed), or None while unresolvable
        self.named: dict[str, str | None] = {}
        self.governors: dict[str, Governance] = {}  # lowercase governor address -> client
        self.proposals: dict[tuple[str, int], ProposalRecord] = {}
        self._lock = threading.Lock()
        abi = load(TIMELOCK_GOVERNOR).abi
        self._decoder = w3.eth.contract(abi=abi)
        self._topics = {
            Web3.keccak(text=f"{e['name']}({','.join(_type(i) for i in e['inputs'])})"): e["name"]
            for e in abi
            if e.get("type") == "event" and e["name"] in _EVENTS
        }
        self.polls = 0

    # ------------------------------------------------------------------ which governors

    def _resolve(self, named: str) -> str | None:
        gov = Governance(self.w3, named)
        if gov.is_governor():
            return gov.address
        # A timelock: its governor is the account granted PROPOSER_ROLE.
        timelock = self.w3.eth.contract(address=gov.address, abi=load(TIMELOCK).abi)
        try:
            role = timelock.functions.PROPOSER_ROLE().call()
            logs = timelock.events.RoleGranted().get_logs(from_block=0, argument_filters={"role": role})
        except Exception:  # not a timelock either: nothing to index (yet)
            return None
        for lg in logs:
            candidate = Governance(self.w3, str(lg["args"]["account"]))
            if candidate.is_governor() and (candidate.timelock() or "").lower() == named:
                return candidate.address
        return None

    def _refresh_named(self) -> None:
        for state in list(self.registry.states.values()):
            if state.governor == ZERO20:
                continue
            named = "0x" + state.governor.hex()
            if self.named.get(named) is None:
                resolved = call(self.w3, "resolve governor", lambda n=named: self._resolve(n))
                self.named[named] = resolved
                if resolved is not None and resolved.lower() not in self.governors:
                    self.governors[resolved.lower()] = Governance(self.w3, resolved)
                    self.scanned = min(self.scanned, self.start_block - 1)  # index a new DAO from the start

    # ------------------------------------------------------------------ one poll

    def poll(self) -> int:
        """One round (blocking): resolve, scan logs, refresh open proposals. Returns logs seen."""
        self._refresh_named()
        self.polls += 1
        if not self.governors:
            return 0
        head = int(call(self.w3, "eth_blockNumber", lambda: self.w3.eth.block_number))
        seen = 0
        addresses = [g.address for g in self.governors.values()]
        while self.scanned < head:
            start = self.scanned + 1
            end = min(head, start + self.max_range - 1)
            logs = call(
                self.w3,
                f"eth_getLogs({start}..{end})",
                lambda s=start, e=end: self.w3.eth.get_logs(
                    {"address": addresses, "fromBlock": s, "toBlock": e, "topics": [list(self._topics)]}
                ),
            )
            with self._lock:
                for lg in sorted(logs, key=lambda x: (x["blockNumber"], x["logIndex"])):
                    self._apply(lg)
            seen += len(logs)
            self.scanned = end
        self._refresh_open()
        return seen

    def _apply(self, lg: Any) -> None:
        name = self._topics.get(bytes(lg["topics"][0]))
        if name is None:
            return
        args = getattr(self._decoder.events, name)().process_log(lg)["args"]
        governor = Web3.to_checksum_address(lg["address"])
        key = (governor.lower(), int(args["proposalId"]))
        tx = lg["transactionHash"].to_0x_hex()
        if name == "ProposalCreated":
            gov = self.governors[governor.lower()]
            revocations = [r for c in args["calldatas"] if (r := decode_revocation(bytes(c))) is not None]
            self.proposals[key] = ProposalRecord(
                governor=governor,
                executor=gov.executor(),
                proposal_id=key[1],
                proposer=str(args["proposer"]),
                description=str(args["description"]),
                revocations=revocations,
                vote_start=int(args["voteStart"]),
                vote_end=int(args["voteEnd"]),
                created_block=int(lg["blockNumber"]),
                created_tx=tx,
            )
            return
        p = self.proposals.get(key)
        if p is None:
            return  # an event of a proposal created before start_block
        if name in ("VoteCast", "VoteCastWithParams"):
            voter = str(args["voter"])
            p.voters[voter.lower()] = VoteRecord(
                voter, int(args["support"]), int(args["weight"]), str(args["reason"]), int(lg["blockNumber"]), tx
            )
        elif name == "ProposalQueued":
            p.eta, p.queued_tx, p.state = int(args["etaSeconds"]), tx, "Queued"
        elif name == "ProposalExecuted":
            p.executed_block, p.executed_tx, p.state = int(lg["blockNumber"]), tx, "Executed"
        elif name == "ProposalCanceled":
            p.state = "Canceled"

    def _refresh_open(self) -> None:
        with self._lock:
            open_ = [p for p in self.proposals.values() if p.state not in FINAL_STATES or p.quorum is None]
        for p in open_:
            gov = self.governors[p.governor.lower()]
            state = gov.state(p.proposal_id)
            votes = gov.votes(p.proposal_id)
            clock = gov.clock()
            quorum = gov.quorum(p.vote_start) if p.vote_start < clock else None
            with self._lock:
                p.state, p.votes, p.quorum = state, votes, quorum

    # ------------------------------------------------------------------ reads

    def _applied(self, p: ProposalRecord) -> list[dict[str, Any]]:
        out = []
        for r in p.revocations:
            subject = bytes.fromhex(r["subject"][2:])
            for g in self.registry.governance(subject):
                if g.proposal_id == p.proposal_id:
                    out.append({"subject": r["subject"], "keyId": g.key_id, "effectiveAt": g.effective_at,
                                "block": g.block_number, "txHash": "0x" + g.tx_hash.hex()})  # fmt: skip
        return out

    def list(
        self, governor: str | None = None, subject: str | None = None, state: str | None = None
    ) -> list[dict[str, Any]]:
        """Proposals (newest first), optionally filtered, with tallies, state and applied revocations."""
        with self._lock:
            items = list(self.proposals.values())
        out = []
        for p in sorted(items, key=lambda p: (p.created_block, p.proposal_id), reverse=True):
            if governor and p.governor.lower() != governor.lower() and p.executor.lower() != governor.lower():
                continue
            if subject and all(r["subject"].lower() != subject.lower() for r in p.revocations):
                continue
            if state and p.state.lower() != state.lower():
                continue
            out.append(p.to_dict(self._applied(p)))
        return out

    def get(self, proposal_id: int, governor: str | None = None) -> dict[str, Any] | None:
        """One proposal (by id, optionally on one governor)."""
        for item in self.list(governor):
            if item["proposalId"] == str(proposal_id):
                return item
        return None

    def status(self) -> dict[str, Any]:
        return {
            "scanned": self.scanned,
            "governors": [g.address for g in self.governors.values()],
            "unresolved": [n for n, g in self.named.items() if g is None],
            "proposals": len(self.proposals),
            "polls": self.polls,
        }


def _type(item: dict[str, Any]) -> str:
    """The canonical ABI type of an event input (tuples spelled out)."""
    t = str(item["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_type(c) for c in item["components"]) + ")" + t[5:]
    return t
