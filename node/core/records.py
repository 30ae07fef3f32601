"""Frozen records of the protocol: events, published keys, governance revocations.

Records hold decoded values only (ints, bytes, str, tuples). They never encode themselves:
the bytes that are hashed and signed are produced in ``eip712.py`` alone, the wire form in
``codec.py`` alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
from typing import Any, Literal, TypeVar

ZERO32 = b"\x00" * 32
ZERO20 = b"\x00" * 20

ALGORITHMS = ("Ed25519", "secp256k1", "P-256")
# Raw public key lengths per algorithm: Ed25519 raw 32 bytes; secp256k1 and P-256 compressed SEC1.
PUBLIC_KEY_LENGTHS = {"Ed25519": 32, "secp256k1": 33, "P-256": 33}

_T = TypeVar("_T")


def _field_names(cls: type[Any]) -> list[str]:
    return [f.name for f in fields(cls)]


def _field_code(cls: type[Any]) -> tuple[str, str, dict[str, Any]]:
    """(parameter list, body setting each slot through its descriptor, namespace); constructor uses the list."""
    names = _field_names(cls)
    defaults = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
    params = ", ".join(n + (f"=_default_{n}" if n in defaults else "") for n in names)
    body = "".join(f"    _set_{n}(self, {n})\n" for n in names)
    namespace: dict[str, Any] = {f"_set_{n}": cls.__dict__[n].__set__ for n in names}
    namespace.update({f"_default_{n}": v for n, v in defaults.items()})
    return params, body, namespace


def fast_init(cls: type[_T]) -> type[_T]:
    """Give a frozen slots dataclass an ``__init__`` that writes its slot descriptors directly.

    Same signature, defaults and immutability (assignment still raises FrozenInstanceError); about
    twice as fast as the generated one, which calls ``object.__setattr__`` per field. Records are
    built several times per validated event, so this is a measurable share of the fast path.
    """
    params, body, namespace = _field_code(cls)
    exec(f"def __init__(self, {params}):\n{body}", namespace)  # noqa: S102  fixed field names, no input
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010  (mypy forbids assigning a method directly)
    return cls


def constructor(cls: type[_T]) -> Callable[..., _T]:
    """A function ``(*fields) -> cls`` building the same instance as ``cls(*fields)``, for hot paths.

    Calling a class runs ``type.__call__``, ``object.__new__`` and then ``__init__`` through a slot
    lookup, and a frozen class can set its slots only through their descriptors' ``__set__`` (a call
    per field); on CPython 3.11 both cost about as much as the rest of decoding an event. This
    function builds the instance as a *builder*: a plain class with the same ``__slots__`` (so the
    same memory layout), whose slots ordinary attribute stores set, and then makes it an instance
    of ``cls`` by ``__class__`` assignment, which CPython allows exactly between such layouts.
    The result is indistinguishable from ``cls(*fields)``; about twice as fast as setting the
    slots through descriptors. Only for classes without ``__post_init__``.
    """
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__; constructor() would skip it")
    params, _, namespace = _field_code(cls)
    name = f"new_{cls.__name__}"
    names = _field_names(cls)
    builder = type(f"{cls.__name__}Builder", (), {"__slots__": cls.__dict__.get("__slots__", ())})
    stores = "".join(f"    self.{n} = {n}\n" for n in names)
    namespace.update(_builder=builder, _cls=cls)
    source = f"def {name}({params}):\n    self = _builder()\n{stores}    self.__class__ = _cls\n    return self\n"
    exec(source, namespace)  # noqa: S102  fixed field names, no input
    make: Callable[..., _T] = namespace[name]
    # The layouts match when cls derives from object and its slots are its fields (every record
    # here); checked once rather than trusted (a mismatch raises TypeError on __class__ assignment).
    probe = make(*names)
    if type(probe) is not cls or [getattr(probe, n) for n in names] != names:
        raise TypeError(f"{cls.__name__}: the builder's layout differs; constructor() cannot serve it")
    make.__doc__ = f"{cls.__name__}(*fields), without the class-call dispatch (see records.constructor)."
    return make


Kind = Literal["inception", "update", "rotation", "revocation"]
KINDS: tuple[Kind, ...] = ("inception", "update", "rotation", "revocation")


@fast_init
@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain: which network and registry contract an event belongs to."""

    chain_id: int
    verifying_contract: bytes  # 20 bytes
    name: str = "keyreg"
    version: str = "1"


@fast_init
@dataclass(frozen=True, slots=True)
class PublishedKey:
    """A service key a subject publishes for verifiers."""

    key_id: str
    alg: str
    public_key: bytes
    purposes: tuple[str, ...]
    not_before: int
    not_after: int  # 0 = no expiry


@fast_init
@dataclass(frozen=True, slots=True)
class KeyRetirement:
    """Sets the not-after of an existing key (it can only shorten validity)."""

    key_id: str
    not_after: int


@fast_init
@dataclass(frozen=True, slots=True)
class Inception:
    """seq 0 of a subject; the subject id is this event's digest."""

    timestamp: int
    controllers: tuple[bytes, ...]  # sorted ascending, distinct 20-byte addresses
    threshold: int
    next_commitment: bytes  # 32 bytes; ZERO32 = no further rotation possible
    governor: bytes  # 20 bytes; ZERO20 = no DAO may revoke
    keys: tuple[PublishedKey, ...]
    metadata: str

    kind: Literal["inception"] = "inception"
    seq: int = 0
    prev: bytes = ZERO32


@fast_init
@dataclass(frozen=True, slots=True)
class Update:
    """Publish keys, retire keys, or change metadata."""

    subject: bytes
    seq: int
    prev: bytes
    timestamp: int
    publish: tuple[PublishedKey, ...]
    retire: tuple[KeyRetirement, ...]
    set_metadata: bool
    metadata: str

    kind: Literal["update"] = "update"


@fast_init
@dataclass(frozen=True, slots=True)
class Rotation:
    """Reveals the pre-committed controller set and commits the next one."""

    subject: bytes
    seq: int
    prev: bytes
    timestamp: int
    controllers: tuple[bytes, ...]
    threshold: int
    next_commitment: bytes

    kind: Literal["rotation"] = "rotation"


@fast_init
@dataclass(frozen=True, slots=True)
class Revocation:
    """Revokes one key (key_id) or the whole subject (key_id == "") from effective_at."""

    subject: bytes
    seq: int
    prev: bytes
    timestamp: int
    key_id: str
    effective_at: int
    reason: str

    kind: Literal["revocation"] = "revocation"


Event = Inception | Update | Rotation | Revocation


@fast_init
@dataclass(frozen=True, slots=True)
class SignedEvent:
    """An event with its controller signatures (65-byte r||s||v each, ascending by signer)."""

    event: Event
    signatures: tuple[bytes, ...]
    domain: Domain


@fast_init
@dataclass(frozen=True, slots=True)
class GovernanceRevocation:
    """A revocation executed on-chain by the governor a subject named at inception.

    Not controller-signed and not part of the hash chain: it comes from the registry contract's
    ``GovernanceRevoked`` event and is applied to key state from ``effective_at``.
    """

    subject: bytes
    key_id: str  # "" = whole subject
    effective_at: int
    reason_hash: bytes  # 32 bytes
    proposal_id: int
    governor: bytes  # 20 bytes
    block_number: int = 0
    tx_hash: bytes = b""


def subject_of(event: Event, digest: bytes) -> bytes:
    """The subject an event belongs to (an inception's subject is its own digest)."""
    return digest if isinstance(event, Inception) else event.subject
