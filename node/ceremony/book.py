"""A node's pending proposals: bounded per subject and in all, expiring, held in memory only.

Anyone may create a proposal (it is unauthenticated until signed), so the book must never let an
outsider crowd out a real ceremony or grow without bound:

- at most ``max_pending`` proposals in all, ``max_pending_per_subject`` per subject and
  ``max_pending_per_client`` per creating client (so one client cannot fill the book with proposals
  for subjects it controls, each signed by its own keys);
- each expires ``ttl_s`` after it was created (one TTL for all, so creation order is expiry order
  and expired entries leave from the front of one ordered dict: O(1) per entry);
- when a cap is reached, the book makes room by dropping, oldest first, an entry that is *stale*
  (its subject's head moved on: it can never complete), *done* (submitted), or *unbacked* (no
  signature yet). A proposal holding a signature of its signer set is never dropped for a newcomer,
  so junk cannot evict a ceremony that has begun; an inception's signature does not count (its
  proposer chose the signer set, so anyone can sign one). With nothing to drop, the newcomer is
  refused (``OverCapacity``).

A restart forgets every pending proposal: signatures stay valid while the head does not move, so
signers (or the ``keyreg event`` files they hold) attach them again. Pure: the caller passes the
clock reading and a ``stale(entry)`` predicate (the registry's head), so the book does no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import OverCapacity
from .proposal import Proposal


@dataclass(frozen=True, slots=True)
class BookLimits:
    max_pending: int = 256
    max_pending_per_subject: int = 8
    ttl_s: float = 3 * 24 * 3600.0
    max_pending_per_client: int = 16


@dataclass(slots=True)
class Entry:
    """A pending proposal and what the node knows of it."""

    proposal: Proposal
    created: float
    expires: float
    # The node's ingest result (IngestResult.to_dict()) once the proposal completed and was submitted.
    submitted: dict[str, Any] | None = field(default=None)
    client: str = ""  # who created it (the API's client key)

    @property
    def id(self) -> bytes:
        return self.proposal.digest

    @property
    def backed(self) -> bool:
        # An inception's signers are whoever its proposer named: their signature proves nothing.
        return bool(self.proposal.signatures) and self.proposal.event.kind != "inception"


Stale = Callable[[Entry], bool]


class ProposalBook:
    """Pending proposals by id (the event's digest), in creation order."""

    def __init__(self, limits: BookLimits) -> None:
        self.limits = limits
        self._entries: OrderedDict[bytes, Entry] = OrderedDict()
        self._by_subject: dict[bytes, list[bytes]] = {}
        self._by_client: dict[str, list[bytes]] = {}
        self.dropped = 0  # entries dropped to make room (not counting expiry)
        self.expired = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(list(self._entries.values()))

    def expire(self, now: float) -> None:
        """Drop every entry past its expiry (they sit at the front: one TTL for all)."""
        while self._entries:
            first = next(iter(self._entries.values()))
            if first.expires > now:
                return
            self._remove(first.id)
            self.expired += 1

    def get(self, pid: bytes, now: float) -> Entry | None:
        self.expire(now)
        return self._entries.get(pid)

    def for_subject(self, subject: bytes, now: float) -> list[Entry]:
        self.expire(now)
        return [self._entries[i] for i in self._by_subject.get(subject, ())]

    def add(self, proposal: Proposal, now: float, stale: Stale, client: str = "") -> tuple[Entry, bool]:
        """The entry for ``proposal`` and whether it is new; an existing id returns the entry held.

        Raises OverCapacity when a cap is reached and no entry can be dropped (see the module doc).
        """
        self.expire(now)
        held = self._entries.get(proposal.digest)
        if held is not None:
            return held, False
        theirs = self._by_client.get(client, [])
        if len(theirs) >= self.limits.max_pending_per_client and not self._drop_one(theirs, stale):
            raise OverCapacity(
                f"this client created {len(theirs)} pending proposals, its limit (proposals.max_pending_per_client)"
            )
        subject = proposal.subject
        mine = self._by_subject.get(subject, [])
        if len(mine) >= self.limits.max_pending_per_subject and not self._drop_one(mine, stale):
            raise OverCapacity(
                f"this node holds {len(mine)} pending proposals for subject 0x{subject.hex()}, its limit "
                "(proposals.max_pending_per_subject), each already signed: complete or let one expire first"
            )
        if len(self._entries) >= self.limits.max_pending and not self._drop_one(list(self._entries), stale):
            raise OverCapacity(
                f"this node holds {len(self._entries)} pending proposals, its limit (proposals.max_pending)"
            )
        entry = Entry(proposal, now, now + self.limits.ttl_s, client=client)
        self._entries[entry.id] = entry
        self._by_subject.setdefault(subject, []).append(entry.id)
        self._by_client.setdefault(client, []).append(entry.id)
        return entry, True

    def update(self, entry: Entry, proposal: Proposal) -> None:
        """Replace an entry's proposal by the same proposal with more signatures."""
        assert proposal.digest == entry.id
        entry.proposal = proposal

    def _drop_one(self, ids: list[bytes], stale: Stale) -> bool:
        """Drop the oldest entry of ``ids`` that is stale or done, else the oldest unbacked one."""
        entries = [self._entries[i] for i in ids]
        victim = next((e for e in entries if e.submitted is not None or stale(e)), None)
        if victim is None:
            victim = next((e for e in entries if not e.backed), None)
        if victim is None:
            return False
        self._remove(victim.id)
        self.dropped += 1
        return True

    def _remove(self, pid: bytes) -> None:
        entry = self._entries.pop(pid)
        ids = self._by_subject[entry.proposal.subject]
        ids.remove(pid)
        if not ids:
            del self._by_subject[entry.proposal.subject]
        created = self._by_client[entry.client]
        created.remove(pid)
        if not created:
            del self._by_client[entry.client]

    def status(self) -> dict[str, int]:
        return {
            "pending": len(self._entries),
            "subjects": len(self._by_subject),
            "dropped": self.dropped,
            "expired": self.expired,
        }
