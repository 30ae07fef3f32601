"""The bundle file: its model, strict decoder and deterministic encoder (docs/bundle.md).

A bundle is canonical JSON (sorted keys, no whitespace, UTF-8, lowercase 0x-hex), optionally
gzipped (detected by its magic bytes). Decoding is strict like the event codec: unknown, missing
or duplicated fields and wrong types are refused with :class:`BundleFormatError` naming the field.
Nothing here checks proofs or signatures: that is :mod:`keyreg.verify.loading`'s job.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from ..core.codec import dumps_canonical, event_from_obj, event_to_obj, loads_strict
from ..core.errors import MalformedEvent
from ..core.records import Domain, SignedEvent
from .errors import BundleFormatError

FORMAT = "keyreg-bundle"
VERSION = 2  # 2: protocol 2 events (operator sets, delegations; EIP-712 domain version "2")
# A gzip bundle inflates to at most MAX_BUNDLE_BYTES, and to at most MAX_INFLATE_RATIO times its
# own size past INFLATE_FLOOR_BYTES: real bundles (hex and base64 in JSON) compress 2-5x, a bomb
# of whitespace 1000x, and inflating then parsing a GiB costs an air-gapped verifier 2 GB and 15 s.
MAX_BUNDLE_BYTES = 256 << 20
MAX_INFLATE_RATIO = 64
INFLATE_FLOOR_BYTES = 64 << 20

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The block every proof is checked against; ``header`` is its RLP (keccak(header) == hash)."""

    number: int
    hash: bytes
    timestamp: int
    header: bytes


@dataclass(frozen=True, slots=True)
class GovernanceEntry:
    """A governance revocation as indexed from the chain. ``key_id`` and ``effective_at`` are proven
    by the registry's storage; the rest locates the ``GovernanceRevoked`` log for auditors."""

    key_id: str
    effective_at: int
    reason_hash: bytes
    proposal_id: int
    governor: bytes
    block_number: int
    tx_hash: bytes
    log_index: int


@dataclass(frozen=True, slots=True)
class EvidenceEntry:
    """Two validly signed events at one seq (duplicity)."""

    seq: int
    first: SignedEvent
    second: SignedEvent


@dataclass(frozen=True, slots=True)
class DirectAnchor:
    """What the registry's head slots hold for a subject (seq 0 and digest zero if never anchored)."""

    seq: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class BatchAnchor:
    """A subject head inside an anchored batch root, with its sparse Merkle inclusion proof."""

    root: bytes
    seq: int
    digest: bytes
    siblings: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SubjectEntry:
    """Everything a bundle carries about one subject."""

    subject: bytes
    events: tuple[SignedEvent, ...]
    evidence: tuple[EvidenceEntry, ...]
    governance: tuple[GovernanceEntry, ...]
    anchor: DirectAnchor
    batch: BatchAnchor | None


@dataclass(frozen=True, slots=True)
class Bundle:
    """A decoded bundle (not yet verified)."""

    domain: Domain
    checkpoint: Checkpoint
    proof_nodes: tuple[bytes, ...]  # trie nodes of every eth_getProof path needed, each once
    batches: tuple[bytes, ...]  # batch roots the subjects' batch anchors refer to
    subjects: tuple[SubjectEntry, ...]
    created_at: int = 0
    generator: str = ""


# ---------------------------------------------------------------------------------------------
# decoding helpers: each names the field path it failed at


def _fail(where: str, what: str) -> BundleFormatError:
    return BundleFormatError(f"{where}: {what}", part=where.split(".")[0].split("[")[0])


def _obj(v: Any, fields: frozenset[str], where: str, optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if type(v) is dict and v.keys() == fields:  # the common case, one comparison in C
        return v
    if type(v) is not dict:
        raise _fail(where, "must be an object")
    keys = set(v)
    if not fields - optional <= keys:
        raise _fail(where, f"missing field {sorted(fields - optional - keys)[0]!r}")
    if not keys <= fields:
        raise _fail(where, f"unknown field {sorted(keys - fields)[0]!r}")
    return v


def _uint(v: Any, where: str, bits: int = 64) -> int:
    if type(v) is not int or v < 0 or v >= 1 << bits:
        raise _fail(where, f"must be an integer in [0, 2^{bits})")
    return v


def _dec_uint(v: Any, where: str) -> int:
    """A uint256 written as a decimal string (JSON numbers lose precision in many languages)."""
    if type(v) is not str or not v.isdigit() or (len(v) > 1 and v[0] == "0") or len(v) > 78:
        raise _fail(where, "must be a decimal string without leading zeros")
    n = int(v)
    if n >= 1 << 256:
        raise _fail(where, "must be below 2^256")
    return n


def _hex(v: Any, where: str, length: int | None = None) -> bytes:
    if type(v) is not str or v[:2] != "0x":
        raise _fail(where, "must be a 0x-prefixed hex string")
    body = v[2:]
    try:
        b = bytes.fromhex(body)
    except ValueError:
        b = None
    # fromhex tolerates upper case and whitespace; round-tripping admits only canonical lowercase hex.
    if b is None or b.hex() != body:
        raise _fail(where, "must be lowercase hex of whole bytes")
    if length is not None and len(b) != length:
        raise _fail(where, f"must be {length} bytes, got {len(b)}")
    return b


def _str(v: Any, where: str) -> str:
    if type(v) is not str:
        raise _fail(where, "must be a string")
    return v


def _list(v: Any, where: str, item: Callable[[Any, str], T]) -> tuple[T, ...]:
    if type(v) is not list:
        raise _fail(where, "must be a list")
    out = []
    for i, x in enumerate(v):
        try:
            out.append(item(x, where))
        except BundleFormatError as exc:  # name the item only on the error path (keeps loading fast)
            raise BundleFormatError(exc.message.replace(where, f"{where}[{i}]", 1), **exc.details) from None
    return tuple(out)


def _hex_list(v: Any, where: str, length: int | None = None) -> tuple[bytes, ...]:
    """A list of hex strings, validated in bulk (the bulk of a bundle: proof nodes, siblings)."""
    if type(v) is not list:
        raise _fail(where, "must be a list")
    try:
        out = tuple(map(bytes.fromhex, [x[2:] for x in v]))
        canonical = "".join(v) == "".join(["0x" + b.hex() for b in out])
    except (TypeError, ValueError):
        canonical = False
    if canonical and (length is None or set(map(len, out)) <= {length}):
        return out
    return _list(v, where, lambda x, w: _hex(x, w, length))  # slow path: names the bad item


def _event(v: Any, where: str) -> SignedEvent:
    try:
        return event_from_obj(v)
    except MalformedEvent as exc:
        raise _fail(where, exc.message) from None


_GOV = frozenset(("keyId", "effectiveAt", "reasonHash", "proposalId", "governor", "blockNumber", "txHash", "logIndex"))


def _governance(v: Any, where: str) -> GovernanceEntry:
    o = _obj(v, _GOV, where)
    return GovernanceEntry(
        key_id=_str(o["keyId"], f"{where}.keyId"),
        effective_at=_uint(o["effectiveAt"], f"{where}.effectiveAt"),
        reason_hash=_hex(o["reasonHash"], f"{where}.reasonHash", 32),
        proposal_id=_dec_uint(o["proposalId"], f"{where}.proposalId"),
        governor=_hex(o["governor"], f"{where}.governor", 20),
        block_number=_uint(o["blockNumber"], f"{where}.blockNumber"),
        tx_hash=_hex(o["txHash"], f"{where}.txHash", 32),
        log_index=_uint(o["logIndex"], f"{where}.logIndex"),
    )


def _evidence(v: Any, where: str) -> EvidenceEntry:
    o = _obj(v, frozenset(("seq", "first", "second")), where)
    return EvidenceEntry(
        _uint(o["seq"], f"{where}.seq"), _event(o["first"], f"{where}.first"), _event(o["second"], f"{where}.second")
    )


_SUBJECT = frozenset(("subject", "events", "evidence", "governance", "anchor", "batch"))
_ANCHOR = frozenset(("seq", "digest"))
_BATCH = frozenset(("root", "seq", "digest", "siblings"))


def _subject(v: Any, where: str) -> SubjectEntry:
    o = _obj(v, _SUBJECT, where)
    a = _obj(o["anchor"], _ANCHOR, f"{where}.anchor")
    batch = None
    if o["batch"] is not None:
        b = _obj(o["batch"], _BATCH, f"{where}.batch")
        batch = BatchAnchor(
            root=_hex(b["root"], f"{where}.batch.root", 32),
            seq=_uint(b["seq"], f"{where}.batch.seq"),
            digest=_hex(b["digest"], f"{where}.batch.digest", 32),
            siblings=_hex_list(b["siblings"], f"{where}.batch.siblings", 32),
        )
    return SubjectEntry(
        subject=_hex(o["subject"], f"{where}.subject", 32),
        events=_list(o["events"], f"{where}.events", _event),
        evidence=_list(o["evidence"], f"{where}.evidence", _evidence),
        governance=_list(o["governance"], f"{where}.governance", _governance),
        anchor=DirectAnchor(_uint(a["seq"], f"{where}.anchor.seq"), _hex(a["digest"], f"{where}.anchor.digest", 32)),
        batch=batch,
    )


_TOP = frozenset(
    ("format", "version", "domain", "checkpoint", "proofNodes", "batches", "subjects", "createdAt", "generator")
)


def read_bytes(data: bytes, max_bytes: int = MAX_BUNDLE_BYTES) -> bytes:
    """The JSON bytes of a bundle file, inflating gzip if the file starts with its magic.

    Inflation stops at the cap (see MAX_INFLATE_RATIO): a bomb costs at most the cap, never its
    full inflated size.
    """
    if data[:2] == b"\x1f\x8b":
        cap = min(max_bytes, max(INFLATE_FLOOR_BYTES, MAX_INFLATE_RATIO * len(data)))
        try:
            d = zlib.decompressobj(wbits=31)
            out = d.decompress(data, cap)
            if d.unconsumed_tail:
                raise BundleFormatError(
                    f"bundle inflates beyond {cap} bytes ({MAX_INFLATE_RATIO}x its size, at most {max_bytes})",
                    part="file",
                )
            return out
        except zlib.error as exc:
            raise BundleFormatError(f"bundle is not valid gzip: {exc}", part="file") from None
    return data


def parse_json(text: bytes) -> Any:
    """The JSON value of ``text``, parsed strictly (:func:`keyreg.core.codec.loads_strict`)."""
    try:
        return loads_strict(text)
    except MalformedEvent as exc:
        raise BundleFormatError(f"bundle is not JSON: {exc.message}", part="file") from None


def decode_envelope(data: bytes) -> tuple[Bundle, list[Any]]:
    """Everything but the subjects decoded, and the subjects' raw JSON objects.

    The verifier decodes subjects with :func:`decode_subject` in its worker threads, so decoding
    overlaps the (GIL-free) signature recovery of other subjects.
    """
    top = parse_json(read_bytes(data))
    if type(top) is not dict or top.get("format") != FORMAT:
        raise BundleFormatError(f"not a keyreg bundle (format must be {FORMAT!r})", part="file")
    if top.get("version") != VERSION:
        raise BundleFormatError(
            f"bundle version {top.get('version')!r} is not supported (this verifier reads version {VERSION})",
            part="file",
        )
    o = _obj(top, _TOP, "bundle")
    d = _obj(o["domain"], frozenset(("chainId", "registry")), "domain")
    c = _obj(o["checkpoint"], frozenset(("number", "hash", "timestamp", "header")), "checkpoint")
    if type(o["subjects"]) is not list:
        raise _fail("subjects", "must be a list")
    envelope = Bundle(
        domain=Domain(_uint(d["chainId"], "domain.chainId", 256), _hex(d["registry"], "domain.registry", 20)),
        checkpoint=Checkpoint(
            number=_uint(c["number"], "checkpoint.number"),
            hash=_hex(c["hash"], "checkpoint.hash", 32),
            timestamp=_uint(c["timestamp"], "checkpoint.timestamp"),
            header=_hex(c["header"], "checkpoint.header"),
        ),
        proof_nodes=_hex_list(o["proofNodes"], "proofNodes"),
        batches=_hex_list(o["batches"], "batches", 32),
        subjects=(),
        created_at=_uint(o["createdAt"], "createdAt"),
        generator=_str(o["generator"], "generator"),
    )
    return envelope, o["subjects"]


def decode_subject(obj: Any, index: int) -> SubjectEntry:
    """Decode the ``index``-th subject object of a bundle."""
    return _subject(obj, f"subjects[{index}]")


def decode_bundle(data: bytes) -> Bundle:
    """Parse (and gunzip if needed) a bundle file; structure only, no proof checks."""
    envelope, subjects = decode_envelope(data)
    return replace(envelope, subjects=tuple(decode_subject(s, i) for i, s in enumerate(subjects)))


# ---------------------------------------------------------------------------------------------
# encoding


def _h(b: bytes) -> str:
    return "0x" + b.hex()


def _subject_obj(s: SubjectEntry) -> dict[str, Any]:
    return {
        "subject": _h(s.subject),
        "events": [event_to_obj(e) for e in s.events],
        "evidence": [
            {"seq": e.seq, "first": event_to_obj(e.first), "second": event_to_obj(e.second)} for e in s.evidence
        ],
        "governance": [
            {
                "keyId": g.key_id,
                "effectiveAt": g.effective_at,
                "reasonHash": _h(g.reason_hash),
                "proposalId": str(g.proposal_id),
                "governor": _h(g.governor),
                "blockNumber": g.block_number,
                "txHash": _h(g.tx_hash),
                "logIndex": g.log_index,
            }
            for g in sorted(s.governance, key=lambda g: (g.key_id, g.effective_at))
        ],
        "anchor": {"seq": s.anchor.seq, "digest": _h(s.anchor.digest)},
        "batch": None
        if s.batch is None
        else {
            "root": _h(s.batch.root),
            "seq": s.batch.seq,
            "digest": _h(s.batch.digest),
            "siblings": [_h(x) for x in s.batch.siblings],
        },
    }


def bundle_to_obj(b: Bundle) -> dict[str, Any]:
    """The JSON object of a bundle, in its deterministic order (subjects, nodes and roots sorted)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "domain": {"chainId": b.domain.chain_id, "registry": _h(b.domain.verifying_contract)},
        "checkpoint": {
            "number": b.checkpoint.number,
            "hash": _h(b.checkpoint.hash),
            "timestamp": b.checkpoint.timestamp,
            "header": _h(b.checkpoint.header),
        },
        "proofNodes": sorted({_h(n) for n in b.proof_nodes}),
        "batches": sorted({_h(r) for r in b.batches}),
        "subjects": [_subject_obj(s) for s in sorted(b.subjects, key=lambda s: s.subject)],
        "createdAt": b.created_at,
        "generator": b.generator,
    }


def encode_bundle(b: Bundle, compress: bool = False) -> bytes:
    """Canonical bundle bytes; gzip with a fixed header (mtime 0) so output stays deterministic."""
    raw = dumps_canonical(bundle_to_obj(b))
    return gzip.compress(raw, compresslevel=6, mtime=0) if compress else raw
