"""What ingest reports: one :class:`IngestResult` per submitted event, and one :class:`Report`
per committed batch for the registry's listeners (gossip out, anchor queue)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from .core.errors import KeyregError
from .core.fork import Duplicity
from .core.log import Accepted
from .core.records import Authority, GovernanceRevocation
from .store.base import AnchorRecord

Status = Literal["accepted", "known", "duplicity", "rejected"]


@dataclass(frozen=True, slots=True)
class IngestResult:
    """The outcome for one submitted event."""

    status: Status
    subject: bytes | None = None
    seq: int | None = None
    digest: bytes | None = None
    error: KeyregError | None = None
    switched: bool = False  # this event won fork choice and replaced a stored branch
    # who signed an accepted event (protocol 2, 6.2 step 8); reported only for operator-signed ones
    authority: Authority | None = None

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"status": self.status}
        if self.subject is not None:
            out["subject"] = "0x" + self.subject.hex()
        if self.seq is not None:
            out["seq"] = self.seq
        if self.digest is not None:
            out["digest"] = "0x" + self.digest.hex()
        if self.error is not None:
            out["error"] = self.error.to_dict()
        if self.switched:
            out["switched"] = True
        if self.authority == "operators":
            out["authority"] = "operators"
        return out

    def __post_init__(self) -> None:
        # Invariant: ingest leaves no cyclic garbage, since the cyclic GC's passes pause the event
        # loop that answers verdicts. A result outlives the call that caught its error, and the
        # error's traceback (or that of an error it was raised from or during) holds that call's
        # frames, whose locals hold the results list holding this result: a cycle. A result
        # reports only the error's code and message.
        if self.error is not None:
            self.error.__traceback__ = None
            self.error.__cause__ = None
            self.error.__context__ = None


@dataclass
class Report:
    """What one committed batch changed, handed to listeners after the commit."""

    accepted: list[tuple[Accepted, bytes]] = field(default_factory=list)
    evidence: list[Duplicity] = field(default_factory=list)
    governance: list[GovernanceRevocation] = field(default_factory=list)
    anchors: list[AnchorRecord] = field(default_factory=list)
    source: str = ""


Listener = Callable[[Report], None]
