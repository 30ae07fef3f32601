"""The governance indexer: proposals, votes and tallies of the DAOs that subjects named.

Which DAOs: every non-zero governor the registry's subjects named (at inception, or in a rotation),
once keyreg.gov.recognition has checked that it runs our governor (or timelock) code, governs this
node's registry and counts our membership token. Anyone can create a subject naming any address,
so the table of named addresses is capped (``[gov] max_named``), only ``max_resolves_per_poll``
of them are checked per poll, and one that is not a DAO is re-checked only after a backoff.

Each poll (blocking; the node runs it in a worker thread):
1. resolve newly named addresses (within the budget above);
2. ``eth_getLogs`` over the recognised governors for ProposalCreated / VoteCast /
   VoteCastWithParams / ProposalQueued / ProposalExecuted / ProposalCanceled since the last
   scanned block (a newly recognised DAO's history is read alone from ``start_block``, at most
   ``catchup_blocks_per_poll`` blocks per poll for all new DAOs together);
3. refresh state and tallies of proposals from the governor's views (``state``,
   ``proposalVotes``, and ``quorum`` once, after the snapshot), which are authoritative: logs only
   discover proposals and individual votes, so a reorg can at worst leave a stale vote row until
   the proposal's views are re-read.

Refreshing costs eth_calls against an RPC quota the chain watcher shares, and any member of a
recognised DAO can open proposals (~83k gas each), so it is bounded (issue 13 review, M9): a
proposal is refreshed only when one of its events arrived since its last refresh, when the head
passed its vote start or vote end (recognised DAOs run our governor: the clock is the block
number), or at the slow cadence ``refresh_every_s`` as a safety net; never again once seen in a
final state; and at most ``max_refreshes_per_poll`` per poll, the longest-unrefreshed first, the
rest waiting for the next poll (``status()["refreshesDeferred"]``).

Every log is decoded defensively and on its own (keyreg.gov.decode): a log that does not decode is
skipped, counted and recorded (``status()["skipped"]``, shown in ``/v1/health``) with its cause,
and indexing goes on; a proposer chooses those bytes, so one bad log must never stop the node
(issue 13, finding 2). Tables are capped: proposals (``max_proposals``, the oldest final ones go
first), voters listed per proposal, recognised governors (``max_governors``).

Membership: each recognised DAO's token is scanned with its governor for MemberAdded /
MemberRemoved (the DAO's own votes, executed; the token's deployment emits MemberAdded for the
founders), so the node holds each DAO's current members (``members(governor)``, capped per DAO
and in all) and its latest changes, and links an executed membership proposal to the changes its
transaction made (``appliedMembership``). A proposal's actions are shown by kind: revocations on
the registry, membership changes on the DAO's own token (keyreg.gov.decode.decode_action).

Revocations themselves are not applied here: the chain watcher (keyreg.chain.watcher) feeds the
registry's ``GovernanceRevoked`` events, with confirmations, into ``Registry.add_governance_revocations``;
the indexer only links each executed proposal to the revocation the registry recorded.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from web3 import Web3

from ..chain.client import ChainUnavailable
from ..core.records import ZERO20
from ..outcomes import Report
from ..registry import Registry
from .contracts import Governance
from .decode import MAX_ACTIONS, MEMBER_TOPICS, TOPICS, decode_action, decode_governor_log, decode_token_log
from .recognition import RecognisedDao, Recogniser
from .tx import FINAL_STATES, SUPPORT_NAMES, call

log = logging.getLogger("keyreg.gov.indexer")

# Voters listed per proposal, and vote records held in all (the tallies come from the governor's
# views and are always complete; only the per-voter rows are capped).
MAX_VOTERS_LISTED = 1000
MAX_VOTE_RECORDS = 100_000
SKIPPED_KEPT = 20  # the latest undecodable logs shown in status (all are counted)
RESOLVE_BACKOFF_MAX_S = 3600.0
# Members listed per DAO and in all (a DAO grows only by its own executed votes, ~60k gas per
# member added, but any recognised DAO may be hostile); more are counted, not listed.
MAX_MEMBERS_LISTED = 1000
MAX_MEMBER_RECORDS = 100_000
MEMBER_CHANGES_KEPT = 64  # the latest membership changes kept per DAO
_SCAN_TOPICS = [*TOPICS, *MEMBER_TOPICS]


@dataclass(frozen=True)
class IndexerLimits:
    """Caps on what outsiders (subject creators, proposers) can make the indexer hold or do."""

    max_named: int = 10_000  # distinct addresses named as governor that are tracked
    max_governors: int = 1_000  # recognised DAOs indexed
    max_proposals: int = 5_000  # proposals held (oldest final ones evicted first)
    max_resolves_per_poll: int = 32  # named addresses checked (eth_getCode ...) per poll
    resolve_retry_s: float = 60.0  # first re-check of a named address that is not a DAO (doubles)
    max_range: int = 5000  # blocks per eth_getLogs
    catchup_blocks_per_poll: int = 100_000  # history of newly recognised DAOs read per poll
    max_refreshes_per_poll: int = 64  # proposals whose views are re-read per poll (2-3 eth_calls each)
    refresh_every_s: float = 300.0  # re-read of an open proposal with no event and no boundary passed


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
    description_truncated: bool = False
    actions: int = 0  # all actions; those that are neither kind below are not listed
    membership: list[dict[str, Any]] = field(default_factory=list)  # {"action", "member", "weight"?}
    state: str = "Pending"
    votes: dict[str, int] = field(default_factory=lambda: {"for": 0, "against": 0, "abstain": 0})
    quorum: int | None = None
    voters: dict[str, VoteRecord] = field(default_factory=dict)
    eta: int | None = None
    queued_tx: str | None = None
    executed_block: int | None = None
    executed_tx: str | None = None
    # Refresh bookkeeping (see the module notes): an event arrived since the last refresh; the
    # head block and the indexer clock at the last refresh; seen final by a refresh.
    dirty: bool = True
    refreshed_block: int = -1
    refreshed_at: float = float("-inf")
    final_seen: bool = False

    def to_dict(
        self, applied: list[dict[str, Any]] | None = None, applied_membership: list[dict[str, Any]] | None = None
    ) -> dict[str, Any]:
        return {
            "governor": self.governor,
            "executor": self.executor,
            "proposalId": str(self.proposal_id),
            "proposer": self.proposer,
            "description": self.description,
            "descriptionTruncated": self.description_truncated,
            "actions": self.actions,
            "revocations": self.revocations,
            "membershipChanges": self.membership,
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
            "appliedMembership": applied_membership or [],
        }


@dataclass
class _Named:
    """An address some subject named as governor, and what checking it found."""

    dao: RecognisedDao | None = None
    checked: bool = False
    next_check: float = 0.0
    backoff_s: float = 0.0


class GovernanceIndexer:
    """Keeps :attr:`proposals` up to date for the recognised DAOs named by known subjects."""

    def __init__(
        self,
        w3: Web3,
        registry: Registry,
        recogniser: Recogniser,
        start_block: int = 0,
        limits: IndexerLimits | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        self.w3 = w3
        self.registry = registry
        self.recogniser = recogniser
        self.start_block = start_block
        self.limits = limits or IndexerLimits()
        self.clock = clock
        self.scanned = start_block - 1
        self.named: dict[str, _Named] = {}  # lowercase named address -> what it is
        self.named_dropped = 0  # named addresses not tracked because the table was full
        self.governors: dict[str, Governance] = {}  # lowercase governor address -> client
        self.daos: dict[str, RecognisedDao] = {}  # lowercase governor address -> the checked DAO
        self.tokens: dict[str, str] = {}  # lowercase membership token -> lowercase governor
        # lowercase governor -> checksummed member -> weight (checksummed once, when the log is read:
        # GET /v1/gov/daos/{address} lists up to MAX_MEMBERS_LISTED of them per request)
        self.members: dict[str, dict[str, int]] = {}
        self.member_changes: dict[str, deque[dict[str, Any]]] = {}  # lowercase governor -> latest changes
        self.member_records = 0  # sum of len(m) over members
        self.members_not_listed = 0
        # Newly recognised DAOs whose history is still being read: lowercase governor -> last block
        # read. Invariant: every other governor's logs are applied up to `scanned`.
        self._catching_up: dict[str, int] = {}
        self.proposals: dict[tuple[str, int], ProposalRecord] = {}
        self.skipped_logs = 0
        self.skipped: deque[dict[str, Any]] = deque(maxlen=SKIPPED_KEPT)
        self.evicted_proposals = 0
        self.vote_records = 0  # sum of len(p.voters) over proposals
        self.votes_not_listed = 0
        # Named addresses reach the table from the registry's listener (inceptions as they are
        # committed), not from a walk of every subject per poll; one walk at the first poll (and
        # after the hand-over list overflowed) covers what was there before.
        self._new_named: list[str] = []
        self._walk_needed = True
        self._named_lock = threading.Lock()
        self._lock = threading.Lock()
        self.polls = 0
        self.refreshes = 0
        self.refresh_calls = 0  # eth_calls made to refresh proposals
        self.refreshes_deferred = 0  # due refreshes left to a later poll by max_refreshes_per_poll
        registry.listeners.append(self._on_report)

    def close(self) -> None:
        """Stop listening to the registry (the service calls this when it stops)."""
        if self._on_report in self.registry.listeners:
            self.registry.listeners.remove(self._on_report)

    def _on_report(self, report: Report) -> None:
        """Registry listener (runs on the committing thread): note governors named by new inceptions."""
        # Establishment events (inception, rotation) are where a subject names a governor; a
        # rotation may name a new one (protocol 2, ADR 0028 section 8), which is followed from then on.
        named = [
            "0x" + acc.state.governor.hex()
            for acc, _ in report.accepted
            if acc.state.last_establishment_seq == acc.state.seq and acc.state.governor != ZERO20
        ]
        if not named:
            return
        with self._named_lock:
            if len(self._new_named) + len(named) > self.limits.max_named:
                self._new_named.clear()
                self._walk_needed = True  # too many to hand over: the next poll walks the subjects
            else:
                self._new_named.extend(named)

    # ------------------------------------------------------------------ which governors

    def dao(self, governor: bytes | str) -> RecognisedDao | None:
        """The recognised DAO whose governor is at this address (O(1), no chain access)."""
        key = ("0x" + governor.hex()) if isinstance(governor, bytes) else governor.lower()
        return self.daos.get(key)

    def _track_named(self) -> None:
        """Add addresses named by subjects to the table (capped at max_named)."""
        with self._named_lock:
            walk, self._walk_needed = self._walk_needed, False
            fresh, self._new_named = self._new_named, []
        if walk:
            fresh = [
                "0x" + g.hex()
                for s in list(self.registry.states.values())
                for g in (s.governors or (s.governor,))
                if g != ZERO20
            ]
        for named in fresh:
            if named in self.named:
                continue
            if len(self.named) >= self.limits.max_named:
                self.named_dropped += 1
                continue
            self.named[named] = _Named()

    def _refresh_named(self) -> list[RecognisedDao]:
        """Check due named addresses (at most max_resolves_per_poll); returns the DAOs newly recognised."""
        self._track_named()
        now = self.clock()
        due = [(n, e) for n, e in self.named.items() if e.dao is None and e.next_check <= now]
        found: list[RecognisedDao] = []
        for named, entry in due[: self.limits.max_resolves_per_poll]:
            try:
                dao = self.recogniser.recognise(named)
            except ChainUnavailable:
                raise  # the endpoint is down: the service backs off and retries everything
            except Exception as exc:  # one odd contract (or answer) must not stop the others
                log.warning("governance indexer: checking %s failed: %s: %s", named, type(exc).__name__, exc)
                dao = None
            entry.checked = True
            if dao is None or (dao.governor.lower() not in self.daos and len(self.daos) >= self.limits.max_governors):
                entry.backoff_s = min(RESOLVE_BACKOFF_MAX_S, max(self.limits.resolve_retry_s, 2 * entry.backoff_s))
                entry.next_check = now + entry.backoff_s
                continue
            entry.dao = dao
            key = dao.governor.lower()
            if key not in self.daos:
                self.daos[key] = dao
                self.governors[key] = Governance(self.w3, dao.governor)
                self.tokens[dao.token.lower()] = key
                self.members[key] = {}
                self.member_changes[key] = deque(maxlen=MEMBER_CHANGES_KEPT)
                found.append(dao)
        return found

    # ------------------------------------------------------------------ one poll

    def poll(self) -> int:
        """One round (blocking): resolve, scan logs, refresh open proposals. Returns logs seen."""
        new = self._refresh_named()
        self.polls += 1
        if not self.governors:
            return 0
        head = int(call(self.w3, "eth_blockNumber", lambda: self.w3.eth.block_number))
        for dao in new:
            self._catching_up[dao.governor.lower()] = self.start_block - 1
        # DAOs whose history is read up to `scanned` move on together ...
        steady = [a for key in self.governors if key not in self._catching_up for a in self._addresses(key)]
        seen = self._scan(steady, self.scanned + 1, head) if steady else 0
        self.scanned = max(self.scanned, head)
        # ... and a new DAO's history is read alone, from start_block, within a block budget per
        # poll: recognising many DAOs at once (each costs its deployer, but any may be hostile)
        # costs each poll a bounded number of eth_getLogs, however long the chain.
        budget = self.limits.catchup_blocks_per_poll
        for key, cursor in list(self._catching_up.items()):
            if budget <= 0:
                break
            end = min(self.scanned, cursor + budget)
            seen += self._scan(self._addresses(key), cursor + 1, end)
            budget -= end - cursor
            if end >= self.scanned:
                del self._catching_up[key]
            else:
                self._catching_up[key] = end
        self._refresh_open(head)
        return seen

    def _addresses(self, key: str) -> list[str]:
        """What is scanned for one DAO: its governor and its membership token."""
        return [self.governors[key].address, self.daos[key].token]

    def _scan(self, addresses: list[str], first: int, last: int) -> int:
        seen = 0
        start = first
        while start <= last:
            end = min(last, start + self.limits.max_range - 1)
            logs = call(
                self.w3,
                f"eth_getLogs({start}..{end})",
                lambda s=start, e=end: self.w3.eth.get_logs(
                    {"address": addresses, "fromBlock": s, "toBlock": e, "topics": [_SCAN_TOPICS]}
                ),
            )
            with self._lock:
                for lg in sorted(logs, key=lambda x: (x["blockNumber"], x["logIndex"])):
                    self._apply_guarded(lg)
            seen += len(logs)
            start = end + 1
        return seen

    def _apply_guarded(self, lg: Any) -> None:
        """Apply one log; a log that does not decode or apply is skipped and recorded, never raised."""
        try:
            self._apply(lg)
        except Exception as exc:
            self.skipped_logs += 1
            where = {
                "governor": str(lg.get("address")),
                "block": lg.get("blockNumber"),
                "logIndex": lg.get("logIndex"),
                "txHash": _hex(lg.get("transactionHash")),
                "error": f"{type(exc).__name__}: {str(exc)[:200]}",
            }
            self.skipped.append(where)
            log.warning("governance indexer: skipped an undecodable log %s", where)

    def _apply(self, lg: Any) -> None:
        topics = list(lg["topics"])
        if topics and bytes(topics[0]) in MEMBER_TOPICS:  # routed by topic, then by the token's owner
            owner = self.tokens.get(str(lg["address"]).lower())
            if owner is not None:
                self._apply_member(owner, lg)
            return
        decoded = decode_governor_log(list(lg["topics"]), bytes(lg["data"]))
        if decoded is None:
            return
        name, args = decoded.name, decoded.args
        governor = Web3.to_checksum_address(lg["address"])
        dao = self.daos.get(governor.lower())
        if dao is None:
            return  # a log of an address we do not index (cannot happen: the filter names them)
        key = (governor.lower(), int(args["proposalId"]))
        tx = _hex(lg["transactionHash"]) or ""
        if name == "ProposalCreated":
            revocations, membership = [], []
            registry = self.recogniser.registry
            for target, c in list(zip(args["targets"], args["calldatas"], strict=False))[:MAX_ACTIONS]:
                action = decode_action(target, c, registry, dao.token)
                if action is None:
                    continue
                kind = action.pop("kind")
                (revocations if kind == "revocation" else membership).append(action)
            self.proposals[key] = ProposalRecord(
                governor=governor,
                executor=dao.executor,
                proposal_id=key[1],
                proposer=Web3.to_checksum_address(args["proposer"]),
                description=args["description"],
                description_truncated=args["descriptionTruncated"],
                actions=len(args["calldatas"]),
                revocations=revocations,
                membership=membership,
                vote_start=args["voteStart"],
                vote_end=args["voteEnd"],
                created_block=int(lg["blockNumber"]),
                created_tx=tx,
            )
            self._evict()
            return
        p = self.proposals.get(key)
        if p is None:
            return  # an event of a proposal created before start_block (or evicted)
        p.dirty = True
        if name in ("VoteCast", "VoteCastWithParams"):
            voter = Web3.to_checksum_address(args["voter"])
            known = voter.lower() in p.voters
            if not known and (len(p.voters) >= MAX_VOTERS_LISTED or self.vote_records >= MAX_VOTE_RECORDS):
                self.votes_not_listed += 1
                return
            p.voters[voter.lower()] = VoteRecord(
                voter, args["support"], args["weight"], args["reason"], int(lg["blockNumber"]), tx
            )
            self.vote_records += 0 if known else 1
        elif name == "ProposalQueued":
            p.eta, p.queued_tx, p.state = args["etaSeconds"], tx, "Queued"
        elif name == "ProposalExecuted":
            p.executed_block, p.executed_tx, p.state = int(lg["blockNumber"]), tx, "Executed"
        elif name == "ProposalCanceled":
            p.state = "Canceled"

    def _apply_member(self, governor: str, lg: Any) -> None:
        """A MemberAdded / MemberRemoved of a recognised DAO's token (the DAO's executed vote)."""
        decoded = decode_token_log(list(lg["topics"]), bytes(lg["data"]))
        if decoded is None:
            return
        member, weight = Web3.to_checksum_address(decoded.args["member"]), decoded.args["weight"]
        table = self.members[governor]
        if decoded.name == "MemberAdded":
            if member not in table and (len(table) >= MAX_MEMBERS_LISTED or self.member_records >= MAX_MEMBER_RECORDS):
                self.members_not_listed += 1
            else:
                self.member_records += 0 if member in table else 1
                table[member] = weight
        elif table.pop(member, None) is not None:
            self.member_records -= 1
        self.member_changes[governor].append({
            "action": "add" if decoded.name == "MemberAdded" else "remove",
            "member": member, "weight": weight,
            "block": int(lg["blockNumber"]), "txHash": _hex(lg["transactionHash"]),
        })  # fmt: skip

    def _evict(self) -> None:
        """Keep at most max_proposals: drop the oldest final proposals first, then the oldest."""
        excess = len(self.proposals) - self.limits.max_proposals
        if excess <= 0:
            return
        order = sorted(self.proposals.items(), key=lambda kv: (kv[1].state not in FINAL_STATES, kv[1].created_block))
        for key, _ in order[:excess]:
            self.vote_records -= len(self.proposals.pop(key).voters)
        self.evicted_proposals += excess

    def _due(self, p: ProposalRecord, head: int, now: float) -> bool:
        if p.final_seen:
            return False
        if p.dirty or now - p.refreshed_at >= self.limits.refresh_every_s:
            return True
        # the state moves by itself when the head passes the vote start (Pending -> Active, the
        # quorum becomes readable) and the vote end (Active -> Succeeded / Defeated)
        return any(p.refreshed_block <= boundary < head for boundary in (p.vote_start, p.vote_end))

    def _refresh_open(self, head: int) -> None:
        now = self.clock()
        with self._lock:
            due = [p for p in self.proposals.values() if self._due(p, head, now)]
        due.sort(key=lambda p: p.refreshed_at)  # the longest-unrefreshed first: none starves
        budget = self.limits.max_refreshes_per_poll
        self.refreshes_deferred += max(0, len(due) - budget)
        for p in due[:budget]:
            gov = self.governors.get(p.governor.lower())
            if gov is None:
                continue
            self.refreshes += 1
            with self._lock:
                p.dirty, p.refreshed_block, p.refreshed_at = False, head, now
            try:
                self.refresh_calls += 1
                state = gov.state(p.proposal_id)
                self.refresh_calls += 1
                votes = gov.votes(p.proposal_id)
                quorum = p.quorum
                if quorum is None and p.vote_start < head:  # fixed at the snapshot: read once
                    self.refresh_calls += 1
                    quorum = gov.quorum(p.vote_start)
            except ChainUnavailable:
                with self._lock:
                    p.dirty = True  # not read: due again at the next poll
                raise
            except Exception as exc:  # a proposal the governor will not describe: keep the last view
                log.warning("governance indexer: proposal %s of %s: %s", p.proposal_id, p.governor, exc)
                continue
            with self._lock:
                p.state, p.votes, p.quorum = state, votes, quorum
                p.final_seen = state in FINAL_STATES and not p.dirty

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

    def _applied_membership(self, p: ProposalRecord) -> list[dict[str, Any]]:
        if not p.membership or p.executed_tx is None:
            return []
        with self._lock:
            changes = list(self.member_changes.get(p.governor.lower(), ()))
        return [c for c in changes if c["txHash"] == p.executed_tx]

    def dao_info(self, governor: str) -> dict[str, Any] | None:
        """A recognised DAO (by governor or executor address) with its current members, or None."""
        g = governor.lower()
        with self._lock:
            key = next((k for k, d in self.daos.items() if g in (k, d.executor.lower())), None)
            if key is None:
                return None
            dao = self.daos[key]
            members = sorted(self.members[key].items())
            changes = list(self.member_changes[key])
        return {
            "governor": dao.governor,
            "executor": dao.executor,
            "token": dao.token,
            "name": dao.name,
            "members": [{"address": m, "weight": w} for m, w in members],
            "recentChanges": changes,
        }

    def list(
        self, governor: str | None = None, subject: str | None = None, state: str | None = None, limit: int = 500
    ) -> list[dict[str, Any]]:
        """Proposals (newest first, at most ``limit``), optionally filtered, with tallies and applied revocations."""
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
            out.append(p.to_dict(self._applied(p), self._applied_membership(p)))
            if len(out) >= limit:
                break
        return out

    def get(self, proposal_id: int, governor: str | None = None) -> dict[str, Any] | None:
        """One proposal (by id, optionally on one governor)."""
        with self._lock:
            matches = [p for (_, pid), p in self.proposals.items() if pid == proposal_id]
        for p in sorted(matches, key=lambda p: p.created_block, reverse=True):
            if governor and p.governor.lower() != governor.lower() and p.executor.lower() != governor.lower():
                continue
            return p.to_dict(self._applied(p), self._applied_membership(p))
        return None

    def status(self) -> dict[str, Any]:
        unrecognised = [n for n, e in self.named.items() if e.dao is None and e.checked]
        return {
            "scanned": self.scanned,
            "catchingUp": len(self._catching_up),
            "governors": [g.address for g in self.governors.values()],
            "named": len(self.named),
            "namedDropped": self.named_dropped,
            "unrecognised": len(unrecognised),
            "unrecognisedSample": unrecognised[:10],
            "proposals": len(self.proposals),
            "evictedProposals": self.evicted_proposals,
            "voteRecords": self.vote_records,
            "memberRecords": self.member_records,
            "membersNotListed": self.members_not_listed,
            "votesNotListed": self.votes_not_listed,
            "skippedLogs": self.skipped_logs,
            "skipped": list(self.skipped),
            "polls": self.polls,
            "refreshes": self.refreshes,
            "refreshCalls": self.refresh_calls,
            "refreshesDeferred": self.refreshes_deferred,
        }


def _hex(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    return str(value)
