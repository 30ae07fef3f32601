"""The wire form of signed events: strict JSON, and its canonical encoding.

The wire form is never hashed (the digest is EIP-712, see ``eip712.py``), but it is still
canonical so that stored and gossiped bytes are stable: UTF-8 JSON, keys sorted, no whitespace,
hex lowercase with ``0x``. Decoding is strict: unknown, missing or duplicated fields, wrong types,
out-of-range integers, wrong hex lengths, lone surrogates and nesting past the depth bound are
rejected with :class:`MalformedEvent` (or :class:`OversizedInput` past a size limit). There is one
decoder (:func:`event_from_obj`, on :func:`loads_strict`); docs/adr/0022-one-decoder-one-pipeline.md.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from itertools import accumulate
from typing import Any, NamedTuple

import orjson

from .errors import MalformedEvent, OversizedInput
from .limits import DEFAULT_LIMITS, Limits
from .records import (
    PROTOCOL_VERSION,
    Delegation,
    Domain,
    Event,
    Inception,
    KeyRetirement,
    OperatorSet,
    PublishedKey,
    Revocation,
    Rotation,
    SignedEvent,
    Update,
)

_U64_MAX = 2**64 - 1
_U256_MAX = 2**256 - 1
_ENVELOPE = ("kind", "chainId", "verifyingContract", "signatures")
FIELDS: dict[str, frozenset[str]] = {
    "inception": frozenset(
        (
            *_ENVELOPE,
            "timestamp",
            "controllers",
            "threshold",
            "nextCommitment",
            "governor",
            "operators",
            "keys",
            "metadata",
        )
    ),
    "update": frozenset(
        (*_ENVELOPE, "subject", "seq", "prev", "timestamp", "publish", "retire", "setMetadata", "metadata")
    ),
    "rotation": frozenset(
        (
            *_ENVELOPE,
            "subject",
            "seq",
            "prev",
            "timestamp",
            "controllers",
            "threshold",
            "nextCommitment",
            "governor",
            "operators",
        )
    ),
    "revocation": frozenset((*_ENVELOPE, "subject", "seq", "prev", "timestamp", "keyId", "effectiveAt", "reason")),
    "delegation": frozenset((*_ENVELOPE, "subject", "seq", "prev", "timestamp", "operators")),
}
_OPERATOR_SET_FIELDS = frozenset(("operators", "threshold", "purposes", "maxValidity", "maxKeys"))
_KEY_FIELDS = frozenset(("keyId", "alg", "publicKey", "purposes", "notBefore", "notAfter"))
_RETIRE_FIELDS = frozenset(("keyId", "notAfter"))


# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# Nesting depth. The standard library's parser recurses once per nested array or object and relies
# on the interpreter's recursion limit to stop; py_ecc (imported through web3) raises that limit to
# 100,000, far past what the C stack holds, so a deep text would segfault the process. orjson stops
# at depth 1,024 by itself. Every JSON text from outside is measured by this linear scan in
# C-speed steps before any parser sees it, and refused past the configured bound.

# A hard ceiling whatever the configuration says: the standard library's C recursion (loads_strict's
# exact path) stays far from the end of any thread's stack.
JSON_DEPTH_CEILING = 512
_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the byte it escapes
_STRING = re.compile(rb'"[^"]*"')
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_NOT_BRACKET = b'"'
_ONE_KIND = bytes.maketrans(b"{}", b"[]")
_STEP = bytes.maketrans(b"[]", b"\x01\xff")  # +1 / -1 as signed bytes
_CHUNK = 8192  # prefix sums are summed this many at a time, to stop early on a deep text
_PASSES = 4
_SMALL_TEXT = 16 * 1024


def _brackets(data: bytes | bytearray) -> bytes:
    """The brackets of the JSON text ``data`` outside its strings, as ``[`` and ``]`` only.

    Up to the first syntax error this reads the text as any JSON parser does: a backslash occurs
    only in strings, where it starts an escape of the next character, and the quotes left then
    open and close strings in turn. Past an error, the brackets are whatever they are.
    """
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)  # left to right, as the parser pairs them
    data = data.translate(None, _NOT_STRUCTURE)
    if b'"' in data:
        # Two adjacent quotes are an empty string or a close and the next open with nothing
        # between: dropping them keeps the pairing of the rest. Most strings hold no bracket, so
        # few quotes are left for the regular expression.
        data = data.replace(b'""', b"")
        if b'"' in data:
            data = _STRING.sub(b"", data)
            data = data.translate(None, _NOT_BRACKET)  # an unclosed string's quote
    return bytes(data.translate(_ONE_KIND))


def _deeper_than(brackets: bytes, limit: int) -> bool:
    """Whether some prefix of ``brackets`` opens more than ``limit`` than it closes."""
    level = 0
    steps = memoryview(brackets.translate(_STEP)).cast("b")
    for start in range(0, len(steps), _CHUNK):
        sums = list(accumulate(steps[start : start + _CHUNK], initial=level))
        if max(sums) > limit:
            return True
        level = sums[-1]
    return False


def json_depth(data: bytes | bytearray) -> int:
    """How deep the JSON text ``data`` nests arrays and objects (for any text: an upper bound on
    the depth a parser reaches before the first error). Linear; nothing recurses."""
    steps = memoryview(_brackets(data).translate(_STEP)).cast("b")
    return max(0, max(accumulate(steps), default=0))


def check_json_depth(data: bytes | bytearray, max_depth: int = DEFAULT_LIMITS.max_json_depth) -> None:
    """Raise MalformedEvent if ``data`` nests arrays and objects deeper than ``max_depth``.

    The guard every parse of outside JSON goes through (directly or via :func:`loads_strict`);
    linear, about 1 ns per byte, nothing recurses.
    """
    limit = min(max_depth, JSON_DEPTH_CEILING)
    # A text with no more opening brackets than the bound (any single event) cannot nest deeper;
    # counting is cheaper than the scan, but wasted on large texts, which hold more.
    if len(data) <= _SMALL_TEXT and data.count(b"[") + data.count(b"{") <= limit:
        return
    brackets = _brackets(data)
    if len(brackets) <= limit:  # too few brackets to open more than `limit`
        return
    # Each pass drops every innermost "[]". Prefix sums at the brackets left are unchanged, and a
    # dropped pair's peak was one above the sum before it, so depth <= depth(rest) + passes, and
    # depth >= depth(rest). The passes shrink a real document to a few brackets.
    rest, passes = brackets, 0
    while passes < _PASSES:
        shorter = rest.replace(b"[]", b"")
        if len(shorter) == len(rest):
            break
        rest, passes = shorter, passes + 1
    if not _deeper_than(rest, limit - passes) or (passes and not _deeper_than(brackets, limit)):
        return
    raise MalformedEvent(f"not valid JSON: arrays and objects nest deeper than {limit}")


# ---------------------------------------------------------------------------------------------
# Parsing. orjson parses, and refuses what RFC 8259 refuses (and NaN, infinities, invalid UTF-8 and
# escapes of lone surrogates, which have no UTF-8 form). Two things it does not refuse are checked
# after it: it keeps the last of duplicate keys silently, and it reads an integer beyond 64 bits as
# a float. keyreg's formats hold no floats, and an EIP-712 chainId is a uint256, so a float in the
# result, or fewer members parsed than the text holds, sends the text to the standard library's
# parser, which reads every integer exactly and names a repeated key.

_ESCAPE = re.compile(rb"\\.", re.DOTALL)  # a backslash and the byte it escapes
_STRING = re.compile(rb'"[^"]*"')


def _members_in_text(data: bytes) -> int:
    """The members of every object in the valid JSON text ``data``: its colons outside strings."""
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)  # escaped quotes out, so quotes pair as the parser pairs them
    return _STRING.sub(b"", data).count(b":")


def _census(value: Any) -> int:
    """Members of every object in a parsed value, or -1 if it holds a float (depth is bounded)."""
    children: Iterable[Any]
    if type(value) is dict:
        members, children = len(value), value.values()
    elif type(value) is list:
        members, children = 0, value
    else:
        return -1 if type(value) is float else 0
    for child in children:
        kind = type(child)
        if kind is dict or kind is list:
            inner = _census(child)
            if inner < 0:
                return -1
            members += inner
        elif kind is float:
            return -1
    return members


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise MalformedEvent(f"duplicate field {dup!r}")
    return d


_EXACT = json.JSONDecoder(object_pairs_hook=_reject_duplicates)


def loads_strict(data: bytes | bytearray | str, max_depth: int = DEFAULT_LIMITS.max_json_depth) -> Any:
    """Parse UTF-8 JSON, rejecting duplicate keys, lone surrogates and nesting past ``max_depth``;
    every failure is a MalformedEvent."""
    if isinstance(data, str):
        try:
            data = data.encode()
        except UnicodeEncodeError:  # a lone surrogate in the str itself
            raise MalformedEvent("not valid JSON: the text holds a lone surrogate") from None
    check_json_depth(data, max_depth)  # before any parser sees it
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedEvent(f"not valid JSON: {exc}") from None
    if _census(obj) == _members_in_text(bytes(data)):
        return obj
    # A repeated key (the census found fewer members) or an integer past 64 bits (a float).
    try:
        return _EXACT.decode(bytes(data).decode())
    except ValueError as exc:  # cannot happen for a text orjson accepted; kept as a guard
        raise MalformedEvent(f"not valid JSON: {exc}") from None


def dumps_canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8.

    Raises MalformedEvent for text that has no UTF-8 form (a lone surrogate), as the parsers do.
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise MalformedEvent("text holds a lone surrogate, which has no UTF-8 form") from None


def _render(obj: dict[str, Any]) -> bytes:
    """:func:`dumps_canonical` of an event object, in a fraction of the time: orjson writes the same
    bytes for JSON of str, int, bool, list and dict (tests/registry/test_registry_wire_bytes.py
    holds the two equal); what it cannot write (an int past 64 bits, a lone surrogate) goes to
    dumps_canonical."""
    try:
        return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return dumps_canonical(obj)


# ---------------------------------------------------------------------------------------------
# Field converters: each takes the value and the field name it reports in its error.


def _uint(v: Any, name: str, maximum: int = _U64_MAX) -> int:
    if type(v) is not int or v < 0 or v > maximum:  # type(...) is int: bool is an int subclass
        raise MalformedEvent(f"field {name!r} must be an integer in [0, {maximum}]")
    return v


def _str(v: Any, name: str) -> str:
    if type(v) is not str:
        raise MalformedEvent(f"field {name!r} must be a string")
    return v


def _hex(v: Any, name: str, length: int = -1) -> bytes:
    """Bytes of ``v``, which must be "0x" + lowercase hex (of ``length`` bytes unless -1)."""
    if type(v) is not str or v[:2] != "0x":
        raise MalformedEvent(f"field {name!r} must be a 0x-prefixed hex string")
    try:
        b = bytes.fromhex(v[2:])
    except ValueError:
        raise MalformedEvent(f"field {name!r} is not valid hex") from None
    # fromhex tolerates whitespace and upper case; the wire form is exactly b.hex().
    if v[2:] != b.hex():
        raise MalformedEvent(f"field {name!r} must be lowercase hex without whitespace")
    if length >= 0 and len(b) != length:
        raise MalformedEvent(f"field {name!r} must be {length} bytes, got {len(b)}")
    return b


def _list(v: Any, name: str, max_len: int) -> list[Any]:
    if type(v) is not list:
        raise MalformedEvent(f"field {name!r} must be a list")
    if len(v) > max_len:
        raise OversizedInput(f"field {name!r} has {len(v)} items, limit {max_len}")
    return v


def _check_fields(obj: Any, allowed: frozenset[str], what: str) -> dict[str, Any]:
    if type(obj) is not dict:
        raise MalformedEvent(f"{what} must be a JSON object")
    keys = obj.keys()
    if keys != allowed:
        unknown = sorted(set(keys) - allowed)
        if unknown:
            raise MalformedEvent(f"unknown field {unknown[0]!r} in {what}")
        raise MalformedEvent(f"missing field {sorted(allowed - set(keys))[0]!r} in {what}")
    return obj


def _addresses(v: Any, name: str, limits: Limits) -> tuple[bytes, ...]:
    return tuple([_hex(a, name, 20) for a in _list(v, name, limits.max_controllers)])


def _key(obj: Any, limits: Limits) -> PublishedKey:
    o = _check_fields(obj, _KEY_FIELDS, "published key")
    purposes = _list(o["purposes"], "purposes", limits.max_purposes)
    for p in purposes:
        if type(p) is not str:
            raise MalformedEvent("field 'purposes' must be a list of strings")
    return PublishedKey(
        _str(o["keyId"], "keyId"),
        _str(o["alg"], "alg"),
        _hex(o["publicKey"], "publicKey"),
        tuple(purposes),
        _uint(o["notBefore"], "notBefore"),
        _uint(o["notAfter"], "notAfter"),
    )


def _operator_set(obj: Any, limits: Limits) -> OperatorSet:
    o = _check_fields(obj, _OPERATOR_SET_FIELDS, "operator set")
    purposes = _list(o["purposes"], "purposes", limits.max_purposes)
    for p in purposes:
        if type(p) is not str:
            raise MalformedEvent("field 'purposes' must be a list of strings")
    return OperatorSet(
        tuple([_hex(a, "operators", 20) for a in _list(o["operators"], "operators", limits.max_operators)]),
        _uint(o["threshold"], "threshold", 255),
        tuple(purposes),
        _uint(o["maxValidity"], "maxValidity"),
        _uint(o["maxKeys"], "maxKeys", 65535),
    )


def _keys(v: Any, name: str, limits: Limits) -> tuple[PublishedKey, ...]:
    return tuple([_key(k, limits) for k in _list(v, name, limits.max_keys_per_event)])


def _retirement(obj: Any) -> KeyRetirement:
    o = _check_fields(obj, _RETIRE_FIELDS, "key retirement")
    return KeyRetirement(_str(o["keyId"], "keyId"), _uint(o["notAfter"], "notAfter"))


def _domain(chain_id: Any, contract: Any, known: Domain | None) -> Domain:
    """The event's domain: ``known`` itself when the event names it (so the registry's checks find
    its own object), else a new Domain."""
    if (
        known is not None
        and type(chain_id) is int
        and chain_id == known.chain_id
        and contract == "0x" + known.verifying_contract.hex()
        and (known.name, known.version) == ("keyreg", PROTOCOL_VERSION)  # what a decoded Domain holds
    ):
        return known
    return Domain(_uint(chain_id, "chainId", _U256_MAX), _hex(contract, "verifyingContract", 20))


def event_from_obj(obj: Any, limits: Limits = DEFAULT_LIMITS, domain: Domain | None = None) -> SignedEvent:
    """Decode one signed event from its parsed JSON object; checks every field in order.

    ``domain``: the network the caller expects; an event naming it gets that very object as its
    domain (any other network still decodes, and the rules refuse it as WrongNetwork).
    """
    if type(obj) is not dict:
        raise MalformedEvent("event must be a JSON object")
    kind = obj.get("kind")
    if type(kind) is not str or kind not in FIELDS:  # a list or object here is unhashable: check the type first
        raise MalformedEvent(f"unknown event kind {str(kind)[:40]!r}")
    o = _check_fields(obj, FIELDS[kind], f"{kind} event")
    signed_for = _domain(o["chainId"], o["verifyingContract"], domain)
    max_signatures = max(limits.max_controllers, limits.max_operators)
    sigs = tuple([_hex(s, "signatures", 65) for s in _list(o["signatures"], "signatures", max_signatures)])
    event: Event
    if kind == "inception":
        event = Inception(
            _uint(o["timestamp"], "timestamp"),
            _addresses(o["controllers"], "controllers", limits),
            _uint(o["threshold"], "threshold", 255),
            _hex(o["nextCommitment"], "nextCommitment", 32),
            _hex(o["governor"], "governor", 20),
            _keys(o["keys"], "keys", limits),
            _str(o["metadata"], "metadata"),
            _operator_set(o["operators"], limits),
        )
        return SignedEvent(event, sigs, signed_for)
    subject = _hex(o["subject"], "subject", 32)
    seq = _uint(o["seq"], "seq")
    prev = _hex(o["prev"], "prev", 32)
    timestamp = _uint(o["timestamp"], "timestamp")
    if kind == "update":
        retire = tuple([_retirement(r) for r in _list(o["retire"], "retire", limits.max_keys_per_event)])
        set_metadata = o["setMetadata"]
        if type(set_metadata) is not bool:
            raise MalformedEvent("field 'setMetadata' must be a boolean")
        event = Update(
            subject,
            seq,
            prev,
            timestamp,
            _keys(o["publish"], "publish", limits),
            retire,
            set_metadata,
            _str(o["metadata"], "metadata"),
        )
    elif kind == "rotation":
        event = Rotation(
            subject,
            seq,
            prev,
            timestamp,
            _addresses(o["controllers"], "controllers", limits),
            _uint(o["threshold"], "threshold", 255),
            _hex(o["nextCommitment"], "nextCommitment", 32),
            _hex(o["governor"], "governor", 20),
            _operator_set(o["operators"], limits),
        )
    elif kind == "delegation":
        event = Delegation(subject, seq, prev, timestamp, _operator_set(o["operators"], limits))
    else:
        event = Revocation(
            subject,
            seq,
            prev,
            timestamp,
            _str(o["keyId"], "keyId"),
            _uint(o["effectiveAt"], "effectiveAt"),
            _str(o["reason"], "reason"),
        )
    return SignedEvent(event, sigs, signed_for)


def decode_event(data: bytes, limits: Limits = DEFAULT_LIMITS, domain: Domain | None = None) -> SignedEvent:
    """Decode one signed event from wire bytes (size-capped, strict); ``domain`` as in event_from_obj."""
    if len(data) > limits.max_event_bytes:
        raise OversizedInput(f"event is {len(data)} bytes, limit {limits.max_event_bytes}")
    return event_from_obj(loads_strict(data, limits.max_json_depth), limits, domain)


class CanonicalEvent(NamedTuple):
    """A decoded event and its canonical wire bytes (``encode_event(signed)``), made together."""

    signed: SignedEvent
    wire: bytes


def canonical_from_obj(
    obj: Any, limits: Limits = DEFAULT_LIMITS, domain: Domain | None = None
) -> SignedEvent | CanonicalEvent:
    """Decode a parsed event object and render its canonical bytes from the same object.

    For callers that parsed many events at once (gossip messages, sync frames): one decode, no
    re-parse. Raises what :func:`event_from_obj` raises. An object the decoder accepts holds exactly
    the canonical values (lowercase fixed-length hex, exact ints, exact field sets), so its sorted
    compact rendering is ``encode_event`` of the decoded event; what orjson cannot render (ints
    over 64 bits, lone surrogates) comes back as the SignedEvent alone, to be encoded by the caller.
    """
    signed = event_from_obj(obj, limits, domain)
    try:
        return CanonicalEvent(signed, orjson.dumps(obj, option=orjson.OPT_SORT_KEYS))
    except orjson.JSONEncodeError:
        return signed


def _key_obj(k: PublishedKey) -> dict[str, Any]:
    return {
        "keyId": k.key_id,
        "alg": k.alg,
        "publicKey": "0x" + k.public_key.hex(),
        "purposes": list(k.purposes),
        "notBefore": k.not_before,
        "notAfter": k.not_after,
    }


def operator_set_to_obj(o: OperatorSet) -> dict[str, Any]:
    """The JSON object of an operator set (wire form; also used by views)."""
    return {
        "operators": ["0x" + a.hex() for a in o.operators],
        "threshold": o.threshold,
        "purposes": list(o.purposes),
        "maxValidity": o.max_validity,
        "maxKeys": o.max_keys,
    }


def event_to_obj(signed: SignedEvent) -> dict[str, Any]:
    """The JSON object of a signed event (the inverse of :func:`event_from_obj`)."""
    e = signed.event
    obj: dict[str, Any] = {
        "kind": e.kind,
        "chainId": signed.domain.chain_id,
        "verifyingContract": "0x" + signed.domain.verifying_contract.hex(),
        "signatures": ["0x" + s.hex() for s in signed.signatures],
        "timestamp": e.timestamp,
    }
    if isinstance(e, Inception):
        obj.update(
            controllers=["0x" + c.hex() for c in e.controllers],
            threshold=e.threshold,
            nextCommitment="0x" + e.next_commitment.hex(),
            governor="0x" + e.governor.hex(),
            operators=operator_set_to_obj(e.operators),
            keys=[_key_obj(k) for k in e.keys],
            metadata=e.metadata,
        )
        return obj
    obj.update(subject="0x" + e.subject.hex(), seq=e.seq, prev="0x" + e.prev.hex())
    if isinstance(e, Update):
        obj.update(
            publish=[_key_obj(k) for k in e.publish],
            retire=[{"keyId": r.key_id, "notAfter": r.not_after} for r in e.retire],
            setMetadata=e.set_metadata,
            metadata=e.metadata,
        )
    elif isinstance(e, Rotation):
        obj.update(
            controllers=["0x" + c.hex() for c in e.controllers],
            threshold=e.threshold,
            nextCommitment="0x" + e.next_commitment.hex(),
            governor="0x" + e.governor.hex(),
            operators=operator_set_to_obj(e.operators),
        )
    elif isinstance(e, Delegation):
        obj.update(operators=operator_set_to_obj(e.operators))
    else:
        obj.update(keyId=e.key_id, effectiveAt=e.effective_at, reason=e.reason)
    return obj


def encode_event(signed: SignedEvent) -> bytes:
    """Canonical wire bytes of a signed event."""
    return _render(event_to_obj(signed))
