"""BallotRelay: put members' signed ballots on-chain with ``castVoteBySig``, paying their gas.

A ballot reaches a node from a client (``POST /v1/gov/ballots``, ``keyreg gov vote --by-sig
--submit``) or from the ballot gossip topic. Both paths go through :func:`accept_ballot` (decode,
signature, dedup by (chain, governor, proposal, voter)), then the relay:

- relays ballots it received from a client at once;
- relays gossiped ballots only after ``gossip_delay_s``, and only if the vote is still not on-chain
  by then: the node the member talked to relays first, the others are a fallback, so a ballot is
  normally paid for once.

Before paying, the relay checks what the governor would check (it is a keyreg governor with the
ballot's EIP-712 name, the proposal is Active, the voter has not voted, the ballot's nonce is the
voter's current one, the voter had voting power at the snapshot) and records a clear refusal
otherwise. Every ballot's outcome is visible (``results``): status, tx hash, block, error.

Statuses: ``queued`` -> ``relayed`` (mined, vote counted) | ``already_voted`` (the vote is on-chain,
relayed by someone else) | ``refused`` (the contracts would reject it; ``error`` names why) |
``failed`` (RPC trouble; the ballot is forgotten by dedup so it can be resubmitted) |
``unrelayed`` (this node has no relayer key; it only gossiped the ballot).
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
from .ballots import Ballot, BallotBook, accept_ballot
from .contracts import Governance, address_of, checksum, explain
from .errors import GovernanceRefused

log = logging.getLogger("keyreg.gov.relay")

FINAL = frozenset({"relayed", "already_voted", "refused", "failed", "unrelayed"})


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
    """Accepts ballots (deduplicated), relays them with ``castVoteBySig`` and keeps their results."""

    def __init__(
        self,
        w3: Web3,
        chain_id: int,
        relayer_key: bytes | None = None,
        *,
        gossip_delay_s: float = 3.0,
        max_results: int = 10_000,
        book: BallotBook | None = None,
    ) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self.relayer_key = relayer_key
        self.relayer = address_of(relayer_key) if relayer_key else None
        self.gossip_delay_s = gossip_delay_s
        self.max_results = max_results
        self.book = book or BallotBook()
        self.results: OrderedDict[str, RelayResult] = OrderedDict()
        self._lock = threading.Lock()
        self._send, self._recv = trio.open_memory_channel[tuple[RelayResult, float]](1024)
        # Called with each newly accepted ballot from a client (the service gossips it).
        self.on_accepted: list[Callable[[Ballot], None]] = []
        self.counters = {"accepted": 0, "rejected": 0, "relayed": 0, "refused": 0, "failed": 0, "already_voted": 0}

    # ------------------------------------------------------------------ intake

    def accept(self, data: bytes | dict[str, Any], source: str = "api") -> RelayResult:
        """Decode, validate, dedup and record a ballot (BallotRejected if any of that fails)."""
        try:
            ballot = accept_ballot(data, self.book, self.chain_id)
        except KeyregError:
            self.counters["rejected"] += 1
            raise
        result = RelayResult(ballot_id(ballot), ballot, source)
        with self._lock:
            self.results[result.id] = result
            while len(self.results) > self.max_results:
                self.results.popitem(last=False)
        self.counters["accepted"] += 1
        return result

    def enqueue(self, result: RelayResult) -> None:
        """Schedule an accepted ballot for relaying (gossiped ones after the fallback delay)."""
        not_before = trio.current_time() + (self.gossip_delay_s if result.source == "gossip" else 0.0)
        self._send.send_nowait((result, not_before))
        if result.source != "gossip":
            for callback in self.on_accepted:
                callback(result.ballot)

    def submit(self, data: bytes | dict[str, Any], source: str = "api") -> RelayResult:
        """accept + enqueue (call from the trio thread)."""
        result = self.accept(data, source)
        self.enqueue(result)
        return result

    def result(self, rid: str) -> RelayResult | None:
        return self.results.get(rid)

    # ------------------------------------------------------------------ relaying

    def _finish(self, result: RelayResult, status: str, **kw: Any) -> RelayResult:
        for k, v in kw.items():
            setattr(result, k, v)
        result.status = status
        result.done_at = time.time()
        if status in self.counters:
            self.counters[status] += 1
        if status == "failed":
            self.book.forget(result.ballot)  # transient: let the member (or gossip) resubmit it
        return result

    def relay_now(self, result: RelayResult) -> RelayResult:
        """Pre-check and submit one ballot (blocking; the service runs it in a worker thread)."""
        b = result.ballot
        gov = Governance(self.w3, "0x" + b.governor.hex())
        try:
            if not gov.is_governor():
                raise GovernanceRefused(f"0x{b.governor.hex()} is not a keyreg governor", error="NotAGovernor")
            name = gov.name()
            if name != b.governor_name:
                raise GovernanceRefused(
                    f"the ballot was signed for a governor named {b.governor_name!r}; this one is {name!r}",
                    error="GovernorInvalidSignature",
                )
            if gov.has_voted(b.proposal_id, "0x" + b.voter.hex()):
                return self._finish(result, "already_voted")
            state = gov.state(b.proposal_id)
            if state != "Active":
                raise GovernanceRefused(
                    f"proposal {b.proposal_id} is {state}: votes are only counted while it is Active",
                    error="GovernorUnexpectedProposalState",
                    state=state,
                )
            nonce = gov.nonce("0x" + b.voter.hex())
            if nonce != b.nonce:
                raise GovernanceRefused(
                    f"ballot nonce {b.nonce} is not the voter's current nonce {nonce}: "
                    "a replayed or superseded signature",
                    error="GovernorInvalidSignature",
                )
            if gov.voting_power("0x" + b.voter.hex(), gov.snapshot(b.proposal_id)) == 0:
                raise GovernanceRefused(explain("NotAMember", []), error="NotAMember")
            if self.relayer_key is None:
                return self._finish(result, "unrelayed", error={"code": "no_relayer", "message": "no relayer key"})
            receipt = gov.cast_vote_by_sig(self.relayer_key, b.proposal_id, b.support, checksum(b.voter), b.signature)
        except GovernanceRefused as exc:
            if exc.details.get("error") == "GovernorAlreadyCastVote":
                return self._finish(result, "already_voted")
            return self._finish(result, "refused", error=exc.to_dict())
        except ChainError as exc:
            log.warning("relaying %s failed: %s", result.id, exc.message)
            return self._finish(result, "failed", error=exc.to_dict())
        return self._finish(
            result,
            "relayed",
            tx_hash=receipt["transactionHash"].to_0x_hex(),
            block=int(receipt["blockNumber"]),
            relayer=self.relayer,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Relay queued ballots one at a time (one relayer nonce stream), honouring gossip delays."""
        limiter = trio.CapacityLimiter(1)

        async def relay_later(result: RelayResult, not_before: float) -> None:
            await trio.sleep_until(not_before)
            await trio.to_thread.run_sync(self.relay_now, result, limiter=limiter)

        async with trio.open_nursery() as nursery:
            task_status.started()
            async for result, not_before in self._recv:
                nursery.start_soon(relay_later, result, not_before)

    def status(self) -> dict[str, Any]:
        """Counters and the relayer account, for /v1/health."""
        pending = sum(1 for r in list(self.results.values()) if r.status not in FINAL)
        return {"relayer": self.relayer, "pending": pending, "known": len(self.book), **self.counters}
