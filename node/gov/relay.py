"""BallotRelay: put members' signed ballots on-chain with ``castVoteBySig``, paying their gas.

A ballot reaches a node from a client (``POST /v1/gov/ballots``, ``keyreg gov vote --by-sig
--submit``) or from the ballot gossip topic. Both paths go through :func:`accept_ballot` (decode,
signature, dedup by (chain, governor, proposal, voter)), then the relay:

- relays ballots it received from a client at once;
- relays gossiped ballots only after ``gossip_delay_s``, and only if the vote is still not on-chain
  by then: the node the member talked to relays first, the others are a fallback, so a ballot is
  normally paid for once.

Untrusted input, priced (issue 13, finding 1). On intake, before any signature recovery or chain
access: the ballot's size and shape, its network, that its governor is a DAO the indexer
*recognised* (named by a subject here, running our governor code, governing our registry with our
token: keyreg.gov.recognition) under the name the ballot was signed for, that it is not a
duplicate, that the relay queue has room (``max_pending``), and that the submitting client (API
address, or gossip peer) is within its hourly budget; then the signature, then the voter's
budget. Before paying, the relay checks what the governor would check (the proposal is Active,
the voter has not voted, the ballot's nonce is the voter's current one, the voter had voting
power at the snapshot), estimates the gas and refuses above ``gas_limit`` (every relayed
transaction is sent with that cap), and spends the governor's and the node's hourly budgets.
A fault in one ballot is that ballot's ``failed`` status, logged with its cause; it never stops
the relay. Every ballot's outcome is visible (``results``): status, tx hash, block, error.

Statuses: ``queued`` -> ``relayed`` (mined, vote counted) | ``already_voted`` (the vote is on-chain,
relayed by someone else) | ``refused`` (the contracts would reject it; ``error`` names why) |
``failed`` (RPC trouble or a fault; the ballot is forgotten by dedup so it can be resubmitted) |
``unrelayed`` (this node has no relayer key; it only gossiped the ballot) | ``deferred`` (the
governor's or the node's relay budget is spent; forgotten by dedup so it can be resubmitted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from web3 import Web3

from ..core.errors import ChainError, KeyregError
from .ballots import Ballot, BallotBook, decode_ballot, validate_ballot
from .budget import HourlyBudget
from .contracts import Governance, address_of, checksum, explain
from .errors import BallotRejected, GovernanceRefused
from .recognition import RecognisedDao
from .tx import call, transact

log = logging.getLogger("keyreg.gov.relay")

FINAL = frozenset({"relayed", "already_voted", "refused", "failed", "unrelayed", "deferred"})
_FORGET = frozenset({"failed", "deferred"})  # statuses after which the same ballot may come again


@dataclass(frozen=True)
class RelayLimits:
    """What the relay may spend, and on whose behalf (``[gov]`` in the node config)."""

    gas_limit: int = 300_000  # per relayed castVoteBySig (ours costs ~90k); estimates above it are refused
    ballots_per_voter_per_hour: int = 30
    ballots_per_client_per_hour: int = 120  # per API client address
    ballots_per_peer_per_hour: int = 600  # per gossip forwarder (it forwards many members' ballots)
    relays_per_governor_per_hour: int = 600  # transactions paid for one DAO
    relays_per_hour: int = 2_000  # transactions paid in all
    max_pending: int = 1_024  # ballots accepted and not yet relayed
    max_budget_keys: int = 10_000  # keys remembered per budget table (LRU)
    max_results: int = 10_000  # relay records kept (oldest dropped)


def ballot_id(ballot: Ballot) -> str:
    """The id a ballot's result is listed under: governor:proposalId:voter."""
    return f"0x{ballot.governor.hex()}:{ballot.proposal_id}:0x{ballot.voter.hex()}"


@dataclass
class RelayResult:
    """What happened to one ballot on this node."""

    id: str
    ballot: Ballot
    source: str  # "api" | "gossip" | "cli"
    status: str = "queued"
    tx_hash: str | None = None
    block: int | None = None
    relayer: str | None = None
    error: dict[str, Any] | None = None
    received_at: float = field(default_factory=time.time)
    done_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "source": self.source,
            "ballot": self.ballot.to_obj(),
            "txHash": self.tx_hash,
            "block": self.block,
            "relayer": self.relayer,
            "error": self.error,
            "receivedAt": self.received_at,
            "doneAt": self.done_at,
        }


class BallotRelay:
    """Accepts ballots (deduplicated, budgeted), relays them with ``castVoteBySig`` and keeps their results."""

    def __init__(
        self,
        w3: Web3,
        chain_id: int,
        relayer_key: bytes | None = None,
        *,
        daos: Callable[[bytes], RecognisedDao | None],
        gossip_delay_s: float = 3.0,
        limits: RelayLimits | None = None,
        book: BallotBook | None = None,
    ) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self.relayer_key = relayer_key
        self.relayer = address_of(relayer_key) if relayer_key else None
        self.daos = daos
        self.gossip_delay_s = gossip_delay_s
        self.limits = limits or RelayLimits()
        lim = self.limits
        self.book = book or BallotBook()
        self.results: OrderedDict[str, RelayResult] = OrderedDict()
        self._lock = threading.Lock()
        self._send, self._recv = trio.open_memory_channel[tuple[RelayResult, float]](max(1, lim.max_pending))
        self._pending = 0  # accepted, not yet final (guarded by _lock)
        self.voter_budget = HourlyBudget(lim.ballots_per_voter_per_hour, lim.max_budget_keys)
        self.client_budget = HourlyBudget(lim.ballots_per_client_per_hour, lim.max_budget_keys)
        self.peer_budget = HourlyBudget(lim.ballots_per_peer_per_hour, lim.max_budget_keys)
        self.governor_budget = HourlyBudget(lim.relays_per_governor_per_hour, lim.max_budget_keys)
        self.node_budget = HourlyBudget(lim.relays_per_hour, 1)
        # Called with each newly accepted ballot from a client (the service gossips it).
        self.on_accepted: list[Callable[[Ballot], None]] = []
        self.counters = {
            "accepted": 0, "rejected": 0, "over_budget": 0, "relayed": 0, "refused": 0, "failed": 0,
            "already_voted": 0, "deferred": 0, "gas_used": 0, "wei_spent": 0,
        }  # fmt: skip

    # ------------------------------------------------------------------ intake

    def _reject(self, message: str, **details: Any) -> BallotRejected:
        self.counters["rejected"] += 1
        if details.get("error") in ("OverBudget", "Busy"):
            self.counters["over_budget"] += 1
        return BallotRejected(message, **details)

    def accept(self, data: bytes | dict[str, Any], source: str = "api", client: str = "") -> RelayResult:
        """Check, validate, dedup, budget and record a ballot (BallotRejected if any of that fails).

        ``client`` names who sent it: the API client's address, or the gossip forwarder's peer id
        (its budget is charged). Cheap checks run first; the signature is recovered only for a
        ballot of a recognised DAO, within the client's budget.
        """
        try:
            ballot = decode_ballot(data)
        except KeyregError:
            self.counters["rejected"] += 1
            raise
        if ballot.chain_id != self.chain_id:
            raise self._reject(f"ballot is for chain {ballot.chain_id}, this network is {self.chain_id}",
                               error="WrongChain")  # fmt: skip
        dao = self.daos(ballot.governor)
        if dao is None:
            raise self._reject(
                f"0x{ballot.governor.hex()} is not a keyreg DAO that a subject on this node names "
                "(or it is not indexed yet: retry in a few seconds)",
                error="UnknownGovernor",
            )
        if dao.name != ballot.governor_name:
            raise self._reject(
                f"the ballot was signed for a governor named {ballot.governor_name!r}; this one is {dao.name!r}",
                error="GovernorInvalidSignature",
            )
        if ballot in self.book:
            raise self._reject(f"duplicate ballot: {ballot.describe()} was already received", error="Duplicate")
        with self._lock:
            busy = self._pending >= self.limits.max_pending
        if busy:
            raise self._reject("the relay queue is full: retry later", error="Busy")
        budget = self.peer_budget if source == "gossip" else self.client_budget
        if not budget.take(client or source):
            raise self._reject(f"{source} client {client or '?'} is over its hourly ballot budget", error="OverBudget")
        try:
            validate_ballot(ballot, self.chain_id)
        except KeyregError:
            self.counters["rejected"] += 1
            raise
        if not self.voter_budget.take("0x" + ballot.voter.hex()):
            raise self._reject(f"voter 0x{ballot.voter.hex()} is over its hourly ballot budget", error="OverBudget")
        if not self.book.admit(ballot):
            raise self._reject(f"duplicate ballot: {ballot.describe()} was already received", error="Duplicate")
        result = RelayResult(ballot_id(ballot), ballot, source)
        with self._lock:
            self.results[result.id] = result
            while len(self.results) > self.limits.max_results:
                self.results.popitem(last=False)
            self._pending += 1
        self.counters["accepted"] += 1
        return result

    def enqueue(self, result: RelayResult) -> None:
        """Schedule an accepted ballot for relaying (gossiped ones after the fallback delay)."""
        not_before = trio.current_time() + (self.gossip_delay_s if result.source == "gossip" else 0.0)
        try:
            self._send.send_nowait((result, not_before))
        except trio.WouldBlock:  # cannot happen while _pending bounds the queue; never raise into intake
            self._finish(result, "failed", error={"code": "busy", "message": "the relay queue is full"})
            return
        if result.source != "gossip":
            for callback in self.on_accepted:
                callback(result.ballot)

    def submit(self, data: bytes | dict[str, Any], source: str = "api", client: str = "") -> RelayResult:
        """accept + enqueue (call from the trio thread)."""
        result = self.accept(data, source, client)
        self.enqueue(result)
        return result

    def result(self, rid: str) -> RelayResult | None:
        return self.results.get(rid)

    # ------------------------------------------------------------------ relaying

    def _finish(self, result: RelayResult, status: str, **kw: Any) -> RelayResult:
        for k, v in kw.items():
            setattr(result, k, v)
        with self._lock:
            if result.status not in FINAL:
                self._pending -= 1
            result.status = status
        result.done_at = time.time()
        if status in self.counters:
            self.counters[status] += 1
        if status in _FORGET:
            self.book.forget(result.ballot)  # transient: let the member (or gossip) resubmit it
        return result

    def relay_now(self, result: RelayResult) -> RelayResult:
        """Pre-check and submit one ballot (blocking; the service runs it in a worker thread). Never raises."""
        try:
            return self._relay(result)
        except GovernanceRefused as exc:
            if exc.details.get("error") == "GovernorAlreadyCastVote":
                return self._finish(result, "already_voted")
            return self._finish(result, "refused", error=exc.to_dict())
        except ChainError as exc:
            log.warning("relaying %s failed: %s", result.id, exc.message)
            return self._finish(result, "failed", error=exc.to_dict())
        except Exception as exc:  # a fault in one ballot must not stop the relay: record its cause
            log.warning("relaying %s failed: %s: %s", result.id, type(exc).__name__, exc, exc_info=True)
            cause = {"code": "internal", "message": f"{type(exc).__name__}: {str(exc)[:200]}"}
            return self._finish(result, "failed", error=cause)

    def _relay(self, result: RelayResult) -> RelayResult:
        b = result.ballot
        dao = self.daos(b.governor)
        if dao is None:  # no longer indexed (evicted): do not pay for what we cannot check
            raise GovernanceRefused(f"0x{b.governor.hex()} is not a recognised keyreg DAO", error="NotAGovernor")
        gov = Governance(self.w3, dao.governor)
        voter = "0x" + b.voter.hex()
        if gov.has_voted(b.proposal_id, voter):
            return self._finish(result, "already_voted")
        state = gov.state(b.proposal_id)
        if state != "Active":
            raise GovernanceRefused(
                f"proposal {b.proposal_id} is {state}: votes are only counted while it is Active",
                error="GovernorUnexpectedProposalState",
                state=state,
            )
        nonce = gov.nonce(voter)
        if nonce != b.nonce:
            raise GovernanceRefused(
                f"ballot nonce {b.nonce} is not the voter's current nonce {nonce}: a replayed or superseded signature",
                error="GovernorInvalidSignature",
            )
        if gov.voting_power(voter, gov.snapshot(b.proposal_id)) == 0:
            raise GovernanceRefused(explain("NotAMember", []), error="NotAMember")
        if self.relayer_key is None or self.relayer is None:
            return self._finish(result, "unrelayed", error={"code": "no_relayer", "message": "no relayer key"})
        fn = gov.f.castVoteBySig(b.proposal_id, b.support, checksum(b.voter), b.signature)
        estimate = int(call(self.w3, "castVoteBySig gas", lambda: fn.estimate_gas({"from": self.relayer})))
        cap = self.limits.gas_limit
        if estimate > cap:
            raise GovernanceRefused(
                f"castVoteBySig would use {estimate} gas, over this relay's cap of {cap}", error="GasCapExceeded"
            )
        if not self.governor_budget.take(dao.governor.lower()):
            return self._finish(result, "deferred", error={"code": "over_budget",
                                "message": f"this node's hourly relay budget for {dao.governor} is spent"})  # fmt: skip
        if not self.node_budget.take("node"):
            self.governor_budget.refund(dao.governor.lower())
            return self._finish(result, "deferred", error={"code": "over_budget",
                                "message": "this node's hourly relay budget is spent"})  # fmt: skip
        receipt = transact(self.w3, self.relayer_key, fn, "castVoteBySig", gas=min(cap, estimate * 5 // 4 + 10_000))
        gas_used = int(receipt.get("gasUsed", 0))
        self.counters["gas_used"] += gas_used
        self.counters["wei_spent"] += gas_used * int(receipt.get("effectiveGasPrice", 0))
        return self._finish(
            result,
            "relayed",
            tx_hash=receipt["transactionHash"].to_0x_hex(),
            block=int(receipt["blockNumber"]),
            relayer=self.relayer,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay queued ballots one at a time (one relayer nonce stream), honouring gossip delays.

        At most ``max_pending`` ballots wait here (intake refuses more), so the tasks are bounded.
        """
        limiter = trio.CapacityLimiter(1)

        async def relay_later(result: RelayResult, not_before: float) -> None:
            await trio.sleep_until(not_before)
            await trio.to_thread.run_sync(self.relay_now, result, limiter=limiter)

        async with trio.open_nursery() as nursery:
            task_status.started()
            async for result, not_before in self._recv:
                nursery.start_soon(relay_later, result, not_before)

    def status(self) -> dict[str, Any]:
        """Counters, budgets and the relayer account, for /v1/health."""
        with self._lock:
            pending = self._pending
        return {
            "relayer": self.relayer,
            "pending": pending,
            "known": len(self.book),
            "gasLimit": self.limits.gas_limit,
            **self.counters,
        }
