"""Wire formats of the p2p layer (normative text: docs/p2p.md).

Gossip messages (topic ``/keyreg/1/<chainId>/<registry>/events``) are canonical JSON objects:

- ``{"events":[<event>,...],"type":"events"}``: a batch of signed events in the core's wire form;
- ``{"events":[<first>,<second>],"seq":n,"subject":"0x..","type":"duplicity"}``: evidence, the two
  events sorted by their wire bytes so every node that gossips it produces identical bytes (and the
  content-addressed message id dedups them).

Since wire version 1.1 an events batch may also travel zlib-compressed (:func:`compress_message`):
a message whose first byte is not ``{`` is a zlib stream of one of the above.

Sync frames (``/keyreg/sync/1``) are a 4-byte big-endian length then a canonical JSON object.

Stored events are already canonical JSON bytes, so batches are spliced from them without
re-encoding; sorted keys make ``{"events":[...],"type":...}`` canonical as written.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import trio

from ..core.codec import (
    CanonicalEvent,
    canonical_from_obj,
    dumps_canonical,
    encode_event,
    event_from_obj,
    loads_strict,
)
from ..core.errors import MalformedEvent, OversizedInput, RuleViolation
from ..core.fork import Duplicity
from ..core.limits import DEFAULT_LIMITS, Limits
from ..core.records import SignedEvent

EVENTS = "events"
DUPLICITY = "duplicity"
FRAME_HEADER = 4
COMPRESS_MIN_BYTES = 4096  # smaller events batches are sent as they are (compression gains little)
ZLIB_LEVEL = 1  # 250 KB batch: 3.74x smaller in ~3 ms; level 6 is 4.0x in ~14 ms
# A compressed message may inflate to at most this many times its size (and never past the
# message limit). Event batches hold signatures and digests in hex and deflate ~4x; a bomb of
# repeated bytes deflates ~1,000x, and every inflated byte is parsed, so a 1 KB message could
# cost ~13 ms of the validator's time (a 20,000x amplification). Capped, a message costs at
# most ~64x its own bytes, and the forwarder's byte budget is charged by the inflated size.
MAX_INFLATE_RATIO = 64


def topic_name(chain_id: int, registry: str) -> str:
    """The gossip topic of one network (chain id + registry contract)."""
    return f"/keyreg/1/{chain_id}/{registry.lower()}/events"


def encode_batch(raw_events: Sequence[bytes]) -> bytes:
    """A gossip/sync events batch from canonical event bytes."""
    return b'{"events":[' + b",".join(raw_events) + b'],"type":"events"}'


def encode_duplicity(ev: Duplicity) -> bytes:
    """The evidence message for one duplicity (deterministic bytes)."""
    a, b = sorted((encode_event(ev.first), encode_event(ev.second)))
    subject = dumps_canonical("0x" + ev.subject.hex())
    seq = str(ev.seq).encode()
    return b'{"events":[' + a + b"," + b + b'],"seq":' + seq + b',"subject":' + subject + b',"type":"duplicity"}'


def compress_message(data: bytes) -> bytes:
    """The compressed form of a gossip message: a zlib stream (RFC 1950) of its JSON text."""
    return zlib.compress(data, ZLIB_LEVEL)


def expand_message(data: bytes, max_bytes: int) -> bytes:
    """The JSON text of a gossip message: ``data`` itself if it starts with ``{``, else ``data``
    inflated as one zlib stream of at most ``max_bytes`` and ``MAX_INFLATE_RATIO`` times its own
    size (a bomb stops one byte past the smaller bound).

    Raises OversizedInput when it inflates past either bound, MalformedEvent when it is not a
    complete zlib stream (trailing bytes included) or does not inflate to a JSON object's text.
    """
    if data[:1] == b"{":
        return data
    limit = min(max_bytes, MAX_INFLATE_RATIO * len(data))
    inflater = zlib.decompressobj()
    try:
        text = inflater.decompress(data, limit + 1)
    except zlib.error as exc:
        raise MalformedEvent(f"message is neither a JSON object nor a zlib stream ({exc})") from None
    if len(text) > limit:
        raise OversizedInput(
            f"compressed message inflates past {limit} bytes ({MAX_INFLATE_RATIO}x its size, at most {max_bytes})"
        )
    if not inflater.eof or inflater.unused_data:
        raise MalformedEvent("compressed message is truncated or has bytes after its zlib stream")
    if text[:1] != b"{":
        raise MalformedEvent("compressed message does not hold a JSON object")
    return text


@dataclass
class Decoded:
    """A decoded gossip message: its kind, the events that decoded, and how many did not."""

    kind: str
    events: list[SignedEvent | CanonicalEvent]
    malformed: int
    size: int = 0  # bytes of JSON text parsed (after inflating): what the forwarder is charged


def event_items(objs: list[Any], limits: Limits) -> tuple[list[SignedEvent | CanonicalEvent], int]:
    """Parsed event objects as items for ``Registry.ingest``, and how many were malformed.

    Each object is decoded here, once, together with its canonical bytes
    (:func:`keyreg.core.codec.canonical_from_obj`): the registry stores those bytes as they are and
    parses nothing again (before, each event was rendered to bytes here, parsed again by the
    registry and rendered once more to prove the bytes canonical: ~15 us per event per node).
    """
    return _decode_each(objs, limits, canonical_from_obj)


def _decode_each(
    objs: list[Any], limits: Limits, decode: Callable[[Any, Limits], SignedEvent | CanonicalEvent]
) -> tuple[list[SignedEvent | CanonicalEvent], int]:
    out: list[SignedEvent | CanonicalEvent] = []
    bad = 0
    for e in objs:
        try:
            out.append(decode(e, limits))
        except RuleViolation:
            bad += 1
    return out, bad


def parse_message(data: bytes, max_depth: int = DEFAULT_LIMITS.max_json_depth) -> Any:
    """Parse a gossip message or sync frame strictly (:func:`keyreg.core.codec.loads_strict`)."""
    return loads_strict(data, max_depth)


def canonical_batch(data: bytes, limits: Limits, max_events: int | None = None) -> list[CanonicalEvent] | None:
    """The events of ``data`` if it is a canonical events batch, each decoded once; else None.

    Accept-only (docs/adr/0007): orjson parses ``data``, every event decodes to a CanonicalEvent,
    and the batch spliced from their canonical bytes (:func:`encode_batch`) equals ``data`` byte
    for byte. A text equal to the rendering of its own parse holds no duplicate key (a rendering
    has one occurrence per key of a dict) and no non-canonical form, so this is exactly what the
    strict path would decode, without counting keys. Every honest node sends canonical batches;
    anything else (None) takes the general path, which decides and names the error.
    """
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict or len(obj) != 2 or obj.get("type") != EVENTS:
        return None
    events = obj.get("events")
    if type(events) is not list or not events or (max_events is not None and len(events) > max_events):
        return None
    items: list[CanonicalEvent] = []
    append = items.append
    for e in events:
        try:
            item = canonical_from_obj(e, limits)
        except RuleViolation:
            return None
        if type(item) is not CanonicalEvent:
            return None
        append(item)
    if encode_batch([item.wire for item in items]) != data:
        return None
    return items


def decode_message(data: bytes, max_bytes: int, max_events: int, limits: Limits, raw: bool = False) -> Decoded:
    """Decode a gossip message; raises MalformedEvent when the message as a whole is unusable.

    ``raw``: events as :func:`event_items` gives them (objects as canonical bytes, decoded and
    judged by the registry), else all decoded here. A canonical events batch (what every keyreg
    node sends) takes :func:`canonical_batch`; the result is the same either way.
    """
    if len(data) > max_bytes:
        raise OversizedInput(f"message is {len(data)} bytes, limit {max_bytes}")
    data = expand_message(data, max_bytes)
    if raw:
        fast = canonical_batch(data, limits, max_events)
        if fast is not None:
            return Decoded(EVENTS, list(fast), 0, len(data))
    obj = parse_message(data, limits.max_json_depth)
    if type(obj) is not dict:
        raise MalformedEvent("message must be a JSON object")
    kind = obj.get("type")
    events = obj.get("events")
    if kind == EVENTS:
        if set(obj) != {"type", "events"}:
            raise MalformedEvent("events message has unknown fields")
        if type(events) is not list or not 0 < len(events) <= max_events:
            raise MalformedEvent(f"events must be a list of 1..{max_events} events")
    elif kind == DUPLICITY:
        if set(obj) != {"type", "events", "subject", "seq"}:
            raise MalformedEvent("duplicity message has unknown or missing fields")
        if type(events) is not list or len(events) != 2:
            raise MalformedEvent("duplicity evidence carries exactly two events")
    else:
        raise MalformedEvent(f"unknown message type {kind!r}")
    out, bad = _decode_each(events, limits, canonical_from_obj if raw else event_from_obj)
    if kind == DUPLICITY and bad:
        raise MalformedEvent("duplicity evidence holds a malformed event")
    return Decoded(kind, out, bad, len(data))


# ---------------------------------------------------------------- sync frames


class FrameError(RuleViolation):
    """The peer broke the sync framing (oversized, truncated, not JSON)."""

    code = "bad_frame"


def frame(obj: Any) -> bytes:
    """A length-prefixed canonical JSON frame."""
    body = dumps_canonical(obj)
    return len(body).to_bytes(FRAME_HEADER, "big") + body


def frame_raw(body: bytes) -> bytes:
    """A length-prefixed frame from already canonical bytes."""
    return len(body).to_bytes(FRAME_HEADER, "big") + body


class FrameReader:
    """Reads length-prefixed frames from a libp2p stream, buffering reads (each read has a timeout)."""

    def __init__(self, stream: Any, max_frame: int, timeout_s: float) -> None:
        self._stream = stream
        self._max = max_frame
        self._timeout = timeout_s
        self._buf = bytearray()

    async def _fill(self, n: int) -> None:
        while len(self._buf) < n:
            with trio.fail_after(self._timeout):
                chunk = await self._stream.read(max(65536, n - len(self._buf)))
            if not chunk:
                raise FrameError("stream closed mid-frame")
            self._buf += chunk

    async def read_body(self) -> bytes:
        """The next frame's body bytes."""
        await self._fill(FRAME_HEADER)
        size = int.from_bytes(self._buf[:FRAME_HEADER], "big")
        if size > self._max:
            raise FrameError(f"frame of {size} bytes exceeds the {self._max}-byte limit")
        await self._fill(FRAME_HEADER + size)
        body = bytes(self._buf[FRAME_HEADER : FRAME_HEADER + size])
        del self._buf[: FRAME_HEADER + size]
        return body

    async def read(self) -> dict[str, Any]:
        """The next frame as a JSON object."""
        body = await self.read_body()
        try:
            obj = loads_strict(body)
        except MalformedEvent as exc:
            raise FrameError(str(exc)) from None
        if type(obj) is not dict or not isinstance(obj.get("type"), str):
            raise FrameError("frame must be a JSON object with a type")
        return obj


class FrameWriter:
    """Coalesces frames into writes of about ``chunk`` bytes (small writes are slow in py-libp2p)."""

    def __init__(self, stream: Any, chunk: int = 64 * 1024) -> None:
        self._stream = stream
        self._chunk = chunk
        self._buf = bytearray()

    async def send(self, data: bytes, flush: bool = False) -> None:
        self._buf += data
        if flush or len(self._buf) >= self._chunk:
            await self.flush()

    async def flush(self) -> None:
        while self._buf:
            piece = bytes(self._buf[: self._chunk])
            del self._buf[: self._chunk]
            await self._stream.write(piece)
