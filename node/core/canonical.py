"""Events decoded from already-parsed JSON objects together with their canonical wire bytes.

For callers that parse many events at once (gossip messages, sync frames): each event is decoded
once and its canonical bytes are rendered from the same object, so nothing is parsed twice.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from .codec import _fast_event, _reference_event_from_obj
from .limits import DEFAULT_LIMITS, Limits
from .records import SignedEvent


class CanonicalEvent(NamedTuple):
    """A decoded event and its canonical wire bytes (``encode_event(signed)``), made together."""

    signed: SignedEvent
    wire: bytes


# Bound once: canonical_from_obj runs once per event of every gossip message and sync frame.
_dumps = orjson.dumps
_SORT_KEYS = orjson.OPT_SORT_KEYS
_EncodeError = orjson.JSONEncodeError
# CanonicalEvent(signed, wire) runs the namedtuple's Python __new__, which only calls this.
_new_tuple = tuple.__new__


def canonical_from_obj(obj: Any, limits: Limits = DEFAULT_LIMITS) -> SignedEvent | CanonicalEvent:
    """Decode a parsed event object and render its canonical bytes from the same object.

    For callers that parsed many events at once (gossip messages, sync frames): one decode, no
    re-parse. Raises what :func:`event_from_obj` raises. An object the strict decoder accepts holds
    exactly the canonical values (lowercase fixed-length hex, exact ints, exact field sets), so
    orjson's sorted compact rendering of it is ``encode_event`` of the decoded event (tests hold
    the two equal); what orjson cannot render so (ints over 64 bits, lone surrogates) comes back
    as the SignedEvent alone, to be encoded by the slower reference path.
    """
    try:  # event_from_obj, inlined: the fast decoder, and the reference decoder on any doubt
        signed = _fast_event(obj, limits)
    except Exception:
        signed = _reference_event_from_obj(obj, limits)
    try:
        wire = _dumps(obj, option=_SORT_KEYS)
    except _EncodeError:
        return signed
    return _new_tuple(CanonicalEvent, (signed, wire))
