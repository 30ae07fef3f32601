"""The wire form of signed events: strict JSON, and its canonical encoding.

The wire form is never hashed (the digest is EIP-712, see ``eip712.py``), but it is still
canonical so that stored and gossiped bytes are stable: UTF-8 JSON, keys sorted, no whitespace,
hex lowercase with ``0x``. Decoding is strict: unknown, missing or duplicated fields, wrong types,
out-of-range integers and wrong hex lengths are rejected with :class:`MalformedEvent`.
"""

from __future__ import annotations

import binascii
import json
import re
from itertools import accumulate
from typing import Any, NoReturn

import orjson

from .errors import MalformedEvent, OversizedInput
from .limits import DEFAULT_LIMITS, Limits
from .records import (
    Domain,
    Event,
    Inception,
    KeyRetirement,
    PublishedKey,
    Revocation,
    Rotation,
    SignedEvent,
    Update,
    builder_class,
    constructor,
)

_U64_MAX = 2**64 - 1
_ENVELOPE = ("kind", "chainId", "verifyingContract", "signatures")
FIELDS: dict[str, frozenset[str]] = {
    "inception": frozenset(
        (*_ENVELOPE, "timestamp", "controllers", "threshold", "nextCommitment", "governor", "keys", "metadata")
    ),
    "update": frozenset(
        (*_ENVELOPE, "subject", "seq", "prev", "timestamp", "publish", "retire", "setMetadata", "metadata")
    ),
    "rotation": frozenset(
        (*_ENVELOPE, "subject", "seq", "prev", "timestamp", "controllers", "threshold", "nextCommitment")
    ),
    "revocation": frozenset((*_ENVELOPE, "subject", "seq", "prev", "timestamp", "keyId", "effectiveAt", "reason")),
}
_WHAT = {kind: f"{kind} event" for kind in FIELDS}  # built once: error context for _check_fields
_KEY_FIELDS = frozenset(("keyId", "alg", "publicKey", "purposes", "notBefore", "notAfter"))
_RETIRE_FIELDS = frozenset(("keyId", "notAfter"))


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise MalformedEvent(f"duplicate field {dup!r}")
    return d


# One decoder instance: json.loads(..., object_pairs_hook=...) would build a new JSONDecoder per call.
_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates)
# scan_once (the C scanner) is set in JSONDecoder.__init__ but missing from typeshed.
_scan_once = _DECODER.scan_once  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------------------------
# Nesting depth. The stdlib parser recurses once per nested array or object and relies on the
# interpreter's recursion limit to stop; py_ecc (imported through web3) raises that limit to
# 100,000, far past what the C stack holds, so a 200 KB text of brackets segfaults the process.
# Every JSON text from outside is therefore measured before any parser sees it, by this linear
# scan in C-speed steps, and refused past the bound. orjson needs no scan: it stops at depth 1,024
# by itself without recursing in Python (tests/unit/test_codec.py holds it to that).

# A hard ceiling whatever the configuration says: the stdlib parser's C recursion stays far from
# the end of any thread's stack.
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

    The one guard every parse of outside JSON goes through before the stdlib parser (directly
    or via :func:`loads_strict`); linear, about 1 ns per byte, nothing recurses.
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


# A \uD800-\uDFFF escape. Only texts holding one can parse to a lone surrogate (raw surrogates are
# not UTF-8); a match may still be a valid pair or an escaped backslash, which the check settles.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(obj: Any) -> None:
    try:
        json.dumps(obj, ensure_ascii=False).encode()  # depth already bounded: the recursion is short
    except UnicodeEncodeError:
        raise MalformedEvent("not valid JSON: a \\u escape encodes a lone surrogate (not Unicode text)") from None


def loads_strict(data: bytes | bytearray | str, max_depth: int = DEFAULT_LIMITS.max_json_depth) -> Any:
    """Parse UTF-8 JSON, rejecting duplicate keys, lone surrogates and nesting past ``max_depth``;
    every failure is a MalformedEvent."""
    try:
        if isinstance(data, str):
            text, data = data, data.encode()  # a lone surrogate in a str fails here (UnicodeError)
        else:
            text = data.decode("utf-8")
        check_json_depth(data, max_depth)  # before any parser recurses
        # Fast path: the C scanner directly, for a text that is exactly one JSON value (the canonical
        # form); surrounding whitespace and every error go through decode() for its exact message.
        try:
            obj, end = _scan_once(text, 0)
        except StopIteration:
            end = -1
        if end != len(text):
            obj = _DECODER.decode(text)
    except MalformedEvent:
        raise
    except (ValueError, RecursionError) as exc:  # UnicodeError is a ValueError
        raise MalformedEvent(f"not valid JSON: {exc}") from None
    if b"\\u" in data and _SURROGATE_ESCAPE.search(data):
        _refuse_lone_surrogates(obj)
    return obj


def dumps_canonical(obj: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, no whitespace, UTF-8.

    Raises MalformedEvent for text that has no UTF-8 form (a lone surrogate), as the parsers do.
    """
    try:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise MalformedEvent("text holds a lone surrogate, which has no UTF-8 form") from None


# Field converters take the value itself (the decoder is the node's hottest path after recovery).


def _uint(v: Any, name: str, maximum: int = _U64_MAX) -> int:
    if type(v) is not int or v < 0 or v > maximum:
        raise MalformedEvent(f"field {name!r} must be an integer in [0, {maximum}]")
    return v


def _str(v: Any, name: str) -> str:
    if type(v) is not str:
        raise MalformedEvent(f"field {name!r} must be a string")
    return v


_fromhex = bytes.fromhex


def _hex(v: Any, name: str, length: int = -1) -> bytes:
    # Happy path first: this runs ~5 times per event. "0x" makes islower() true unless A-F appear.
    if type(v) is str and v[:2] == "0x" and v.islower():
        try:
            b = _fromhex(v[2:])
        except ValueError:
            raise MalformedEvent(f"field {name!r} is not valid hex") from None
        # fromhex tolerates whitespace; the wire form is exactly two lowercase digits per byte.
        if len(v) == 2 + 2 * len(b) and (length < 0 or len(b) == length):
            return b
    return _hex_error(v, name, length)


def _hex_error(v: Any, name: str, length: int) -> NoReturn:
    if type(v) is not str or v[:2] != "0x":
        raise MalformedEvent(f"field {name!r} must be a 0x-prefixed hex string")
    try:
        b = _fromhex(v[2:])
    except ValueError:
        raise MalformedEvent(f"field {name!r} is not valid hex") from None
    if len(v) != 2 + 2 * len(b) or not v.islower():
        raise MalformedEvent(f"field {name!r} must be lowercase hex without whitespace")
    raise MalformedEvent(f"field {name!r} must be {length} bytes, got {len(b)}")


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


def _keys(v: Any, name: str, limits: Limits) -> tuple[PublishedKey, ...]:
    return tuple([_key(k, limits) for k in _list(v, name, limits.max_keys_per_event)])


_U256_MAX = 2**256 - 1
# (chainId, verifyingContract as sent) -> Domain: skips re-parsing the domain of every event and lets
# apply_event compare domains by identity.
_domains: dict[tuple[int, str], Domain] = {}


def _reference_event_from_obj(obj: Any, limits: Limits) -> SignedEvent:
    """The reference decoder: checks every field in order and raises the precise error."""
    if type(obj) is not dict:
        raise MalformedEvent("event must be a JSON object")
    kind = obj.get("kind")
    if type(kind) is not str or kind not in FIELDS:  # a list or object here is unhashable: check the type first
        raise MalformedEvent(f"unknown event kind {str(kind)[:40]!r}")
    o = _check_fields(obj, FIELDS[kind], _WHAT[kind])
    chain_id, contract = o["chainId"], o["verifyingContract"]
    domain = _domains.get((chain_id, contract)) if type(chain_id) is int and type(contract) is str else None
    if domain is None:
        domain = Domain(_uint(chain_id, "chainId", _U256_MAX), _hex(contract, "verifyingContract", 20))
        if len(_domains) < 64:  # a node sees one or two networks; the bound only stops cache abuse
            _domains[(chain_id, contract)] = domain
    sigs = tuple([_hex(s, "signatures", 65) for s in _list(o["signatures"], "signatures", limits.max_controllers)])
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
        )
        return SignedEvent(event, sigs, domain)
    subject = _hex(o["subject"], "subject", 32)
    seq = _uint(o["seq"], "seq")
    prev = _hex(o["prev"], "prev", 32)
    timestamp = _uint(o["timestamp"], "timestamp")
    if kind == "update":
        retire = []
        for r in _list(o["retire"], "retire", limits.max_keys_per_event):
            ro = _check_fields(r, _RETIRE_FIELDS, "key retirement")
            retire.append(KeyRetirement(_str(ro["keyId"], "keyId"), _uint(ro["notAfter"], "notAfter")))
        set_metadata = o["setMetadata"]
        if type(set_metadata) is not bool:
            raise MalformedEvent("field 'setMetadata' must be a boolean")
        event = Update(
            subject,
            seq,
            prev,
            timestamp,
            _keys(o["publish"], "publish", limits),
            tuple(retire),
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
        )
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
    return SignedEvent(event, sigs, domain)


# ---------------------------------------------------------------------------------------------
# The fast path. Decoding is the node's hottest step after signature recovery, and the reference
# decoder above spends most of its time on bookkeeping for error messages it almost never raises.
# _fast_event only ever *accepts*: it checks the same rules in fewer steps and gives up at the first
# doubt by raising anything at all (_Doubt, or the KeyError/TypeError/ValueError a malformed value
# causes). event_from_obj then runs the reference decoder from scratch, so which error an input gets,
# its code and its message stay defined in one place (docs/adr/0007-accept-only-fast-paths.md).
# tests/unit/test_fast_paths.py checks that both decoders agree and that every valid vector takes
# the fast path.


class _Doubt(Exception):
    """The fast path does not accept this input; the reference decoder decides."""


# Positional constructors: a class call's dispatch costs about as much as setting the fields.
_new_inception = constructor(Inception)
_new_rotation = constructor(Rotation)
_new_revocation = constructor(Revocation)
_new_key = constructor(PublishedKey)
_new_retirement = constructor(KeyRetirement)
_new_domain = constructor(Domain)
# The two records of every update, built inline in _fast_event: a call less each (~0.3 us an event).
_UpdateBuilder = builder_class(Update)
_SignedEventBuilder = builder_class(SignedEvent)


# binascii's a2b_hex parses hex about a third faster than bytes.fromhex (which also skips whitespace);
# it raises binascii.Error (a ValueError) on an odd length or a non-hex character, ValueError on a
# non-ASCII str and TypeError on a non-string, and takes bytes too: the round trip below decides.
_unhex = binascii.a2b_hex


def _hx(v: Any, length: int) -> bytes:
    """Bytes of ``v`` if it is exactly "0x" + lowercase hex of ``length`` bytes."""
    b = _unhex(v[2:])  # raises on anything but an even run of hex digits
    # a2b_hex also takes uppercase digits, and bytes: only the canonical str survives the round trip
    # through hex() (cheaper than str.islower(), which looks up every character's case).
    if len(b) == length and "0x" + b.hex() == v:
        return b
    raise _Doubt


def _u64(v: Any) -> int:
    if type(v) is int and 0 <= v <= _U64_MAX:  # type(...) is int: bool is an int subclass
        return v
    raise _Doubt


def _u8(v: Any) -> int:
    if type(v) is int and 0 <= v <= 255:
        return v
    raise _Doubt


# Field counts. The fast path checks an object's field set by its size alone: it reads every field
# of the set (a missing one raises KeyError, a doubt), so with as many keys as fields there is no
# room for an unknown one. tests/unit/test_fast_paths.py renames each field to prove every one is read.
_FIELD_COUNT = {kind: len(fields) for kind, fields in FIELDS.items()}
_KEY_FIELD_COUNT = len(_KEY_FIELDS)
_RETIRE_FIELD_COUNT = len(_RETIRE_FIELDS)


def _fast_key(o: Any, max_purposes: int) -> PublishedKey:
    if type(o) is not dict or len(o) != _KEY_FIELD_COUNT:
        raise _Doubt
    key_id, alg, public_key, purposes = o["keyId"], o["alg"], o["publicKey"], o["purposes"]
    not_before, not_after = o["notBefore"], o["notAfter"]
    # What _hx (for any length) and _u64 check, without the calls.
    if (
        type(key_id) is not str
        or type(alg) is not str
        or type(purposes) is not list
        or len(purposes) > max_purposes
        or type(not_before) is not int
        or type(not_after) is not int
        or not 0 <= not_before <= _U64_MAX
        or not 0 <= not_after <= _U64_MAX
    ):
        raise _Doubt
    for p in purposes:
        if type(p) is not str:
            raise _Doubt
    public_key_b = _unhex(public_key[2:])
    if "0x" + public_key_b.hex() != public_key:
        raise _Doubt
    return _new_key(key_id, alg, public_key_b, tuple(purposes), not_before, not_after)


def _fast_retirement(o: Any) -> KeyRetirement:
    if type(o) is not dict or len(o) != _RETIRE_FIELD_COUNT or type(o["keyId"]) is not str:
        raise _Doubt
    return _new_retirement(o["keyId"], _u64(o["notAfter"]))


# (chainId, verifyingContract as sent, Domain) of the last event: one network per node, so this
# skips even the _domains lookup (hashing a fresh 42-character string). Replaced whole (thread-safe).
# The initial chainId None never matches: a match also requires an int.
_last_domain: tuple[int | None, str, Domain] = (None, "", Domain(0, b""))


def _fast_domain(chain_id: Any, contract: Any) -> Domain:
    global _last_domain
    last_id, last_contract, domain = _last_domain
    if chain_id == last_id and contract == last_contract and type(chain_id) is int:  # True == 1: check type
        return domain
    if type(chain_id) is not int:  # True would hash like 1 in the cache key
        raise _Doubt
    cached = _domains.get((chain_id, contract))
    if cached is None:
        if not 0 <= chain_id <= _U256_MAX:
            raise _Doubt
        cached = _new_domain(chain_id, _hx(contract, 20))
        if len(_domains) < 64:
            _domains[(chain_id, contract)] = cached
    _last_domain = (chain_id, contract, cached)
    return cached


def _fast_event(obj: Any, limits: Limits) -> SignedEvent:
    if type(obj) is not dict:
        raise _Doubt
    kind = obj["kind"]
    if len(obj) != _FIELD_COUNT[kind]:  # KeyError on an unknown kind; every field is read below
        raise _Doubt
    chain_id, contract = obj["chainId"], obj["verifyingContract"]
    last_id, last_contract, domain = _last_domain  # _fast_domain's first test, without the call
    if chain_id != last_id or contract != last_contract or type(chain_id) is not int:
        domain = _fast_domain(chain_id, contract)
    sigs = obj["signatures"]
    max_controllers = limits.max_controllers
    if type(sigs) is not list or len(sigs) > max_controllers:
        raise _Doubt
    if len(sigs) == 1:  # one controller: _hx inline
        sig = sigs[0]
        sig_b = _unhex(sig[2:])
        if len(sig_b) != 65 or "0x" + sig_b.hex() != sig:
            raise _Doubt
        signatures: tuple[bytes, ...] = (sig_b,)
    else:
        signatures = tuple([_hx(s, 65) for s in sigs])
    event: Event
    if kind == "update":
        publish, retire, set_metadata, metadata = obj["publish"], obj["retire"], obj["setMetadata"], obj["metadata"]
        max_keys = limits.max_keys_per_event
        if (
            type(publish) is not list
            or len(publish) > max_keys
            or type(retire) is not list
            or len(retire) > max_keys
            or type(set_metadata) is not bool
            or type(metadata) is not str
        ):
            raise _Doubt
        # The envelope of the most common kind inline (what _hx and _u64 check, without the calls).
        subject, prev, seq, timestamp = obj["subject"], obj["prev"], obj["seq"], obj["timestamp"]
        subject_b, prev_b = _unhex(subject[2:]), _unhex(prev[2:])
        if (
            len(subject_b) != 32
            or len(prev_b) != 32
            or "0x" + subject_b.hex() != subject
            or "0x" + prev_b.hex() != prev
            or type(seq) is not int
            or type(timestamp) is not int
            or not 0 <= seq <= _U64_MAX
            or not 0 <= timestamp <= _U64_MAX
        ):
            raise _Doubt
        # records.constructor's statements inline (see builder_class): every field, then the class.
        update: Any = _UpdateBuilder()
        update.subject = subject_b
        update.seq = seq
        update.prev = prev_b
        update.timestamp = timestamp
        update.publish = tuple([_fast_key(k, limits.max_purposes) for k in publish]) if publish else ()
        update.retire = tuple([_fast_retirement(r) for r in retire]) if retire else ()
        update.set_metadata = set_metadata
        update.metadata = metadata
        update.kind = "update"
        update.__class__ = Update
        event = update
    elif kind == "inception":
        controllers, keys, metadata = obj["controllers"], obj["keys"], obj["metadata"]
        if (
            type(controllers) is not list
            or len(controllers) > max_controllers
            or type(keys) is not list
            or len(keys) > limits.max_keys_per_event
            or type(metadata) is not str
        ):
            raise _Doubt
        max_purposes = limits.max_purposes
        event = _new_inception(
            _u64(obj["timestamp"]),
            tuple([_hx(a, 20) for a in controllers]),
            _u8(obj["threshold"]),
            _hx(obj["nextCommitment"], 32),
            _hx(obj["governor"], 20),
            tuple([_fast_key(k, max_purposes) for k in keys]),
            metadata,
        )
    else:  # rotation or revocation: the envelope once, then the kind's own fields
        envelope = (_hx(obj["subject"], 32), _u64(obj["seq"]), _hx(obj["prev"], 32), _u64(obj["timestamp"]))
        if kind == "rotation":
            controllers = obj["controllers"]
            if type(controllers) is not list or len(controllers) > max_controllers:
                raise _Doubt
            addresses = tuple([_hx(a, 20) for a in controllers])
            event = _new_rotation(*envelope, addresses, _u8(obj["threshold"]), _hx(obj["nextCommitment"], 32))
        else:
            key_id, reason = obj["keyId"], obj["reason"]
            if type(key_id) is not str or type(reason) is not str:
                raise _Doubt
            event = _new_revocation(*envelope, key_id, _u64(obj["effectiveAt"]), reason)
    signed: Any = _SignedEventBuilder()  # inline, as for Update above
    signed.event = event
    signed.signatures = signatures
    signed.domain = domain
    signed.__class__ = SignedEvent
    return signed  # type: ignore[no-any-return]


def event_from_obj(obj: Any, limits: Limits = DEFAULT_LIMITS) -> SignedEvent:
    """Decode one signed event from its parsed JSON object."""
    try:
        return _fast_event(obj, limits)
    except Exception:  # any doubt at all: the reference decoder accepts or raises precisely
        return _reference_event_from_obj(obj, limits)


# orjson parses the wire bytes about twice as fast as the stdlib C scanner. Its grammar is RFC 8259
# like json's, and where the two differ orjson is the stricter, so it never accepts what the
# reference path would reject with the same values: it refuses NaN/Infinity, lone surrogate escapes
# and overflowing floats, which json accepts (the reference path then decides), and it turns
# integers beyond 64 bits into floats, which _fast_event refuses (so a 2**256-1 chainId decodes on
# the reference path). tests/unit/test_codec.py checks these differences one by one.
_orjson_loads = orjson.loads


def _fast_decode(data: bytes, limits: Limits) -> SignedEvent:
    """decode_event on the fast parsers; raises anything when it cannot prove the result."""
    obj = _orjson_loads(data)
    signed = _fast_event(obj, limits)
    # orjson keeps the last of duplicate keys silently, so prove there were none by counting.
    # _fast_event has checked every object in the event (top level, published keys, retirements)
    # to hold exactly its field set, so the parsed objects hold `expected` keys. Every key in the
    # text is followed (after optional whitespace) by its own ':', and strings only add more, so
    # count(':') >= keys in the text >= expected; equality leaves no room for a duplicate.
    event = signed.event
    expected = _FIELD_COUNT[event.kind]
    if type(event) is Update:
        expected += _KEY_FIELD_COUNT * len(event.publish) + _RETIRE_FIELD_COUNT * len(event.retire)
    elif type(event) is Inception:
        expected += _KEY_FIELD_COUNT * len(event.keys)
    if data.count(b":") != expected and _key_count_bound(data) != expected:
        raise _Doubt
    return signed


def _key_count_bound(data: bytes) -> int:
    """A tighter upper bound on the keys in the JSON text ``data`` than count(':'), or -1.

    For texts whose strings hold ':' (key ids like "did:x", JSON in metadata). With no whitespace
    right after any '"', each key puts one '":' in the text and strings add only more. If moreover
    no escaped backslash occurs, every backslash starts an escape, so each '":' right after a
    backslash is an escaped quote inside a string, not a key's end: subtracting those still leaves
    an upper bound.
    """
    if (b" " in data or b"\n" in data or b"\t" in data or b"\r" in data) and (
        b'" ' in data or b'"\n' in data or b'"\t' in data or b'"\r' in data
    ):
        return -1
    bound = data.count(b'":')
    if b'\\":' in data:
        if b"\\\\" in data:
            return -1
        bound -= data.count(b'\\":')
    return bound


def decode_event(data: bytes, limits: Limits = DEFAULT_LIMITS) -> SignedEvent:
    """Decode one signed event from wire bytes (size-capped, strict)."""
    if len(data) > limits.max_event_bytes:
        raise OversizedInput(f"event is {len(data)} bytes, limit {limits.max_event_bytes}")
    try:
        return _fast_decode(data, limits)
    except Exception:  # any doubt: the strict parser and the reference decoder decide
        return event_from_obj(loads_strict(data, limits.max_json_depth), limits)


def _key_obj(k: PublishedKey) -> dict[str, Any]:
    return {
        "keyId": k.key_id,
        "alg": k.alg,
        "publicKey": "0x" + k.public_key.hex(),
        "purposes": list(k.purposes),
        "notBefore": k.not_before,
        "notAfter": k.not_after,
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
    if not isinstance(e, Inception):
        obj.update(subject="0x" + e.subject.hex(), seq=e.seq, prev="0x" + e.prev.hex())
    if isinstance(e, Inception):
        obj.update(
            controllers=["0x" + c.hex() for c in e.controllers],
            threshold=e.threshold,
            nextCommitment="0x" + e.next_commitment.hex(),
            governor="0x" + e.governor.hex(),
            keys=[_key_obj(k) for k in e.keys],
            metadata=e.metadata,
        )
    elif isinstance(e, Update):
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
        )
    else:
        obj.update(keyId=e.key_id, effectiveAt=e.effective_at, reason=e.reason)
    return obj


def encode_event(signed: SignedEvent) -> bytes:
    """Canonical wire bytes of a signed event."""
    return dumps_canonical(event_to_obj(signed))
