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


def _builder(cls: type[Any]) -> type[Any] | None:
    """A plain class with ``cls``'s ``__slots__``, so the same memory layout, or None if it has not.

    A frozen class can set its slots only through their descriptors' ``__set__`` (a call per field);
    an instance of the builder takes ordinary attribute stores, which CPython 3.11 specializes, and
    ``__class__`` assignment turns it into an instance of ``cls`` (CPython allows that exactly
    between classes of the same layout, and refuses otherwise: checked here once, both ways).
    """
    builder = type(f"{cls.__name__}Builder", (), {"__slots__": cls.__dict__.get("__slots__", ())})
    try:
        probe = builder()
        probe.__class__ = cls
        object.__setattr__(probe, "__class__", builder)
    except TypeError:
        return None
    return builder


def builder_class(cls: type[Any]) -> type[Any]:
    """The builder of ``cls`` (see :func:`_builder`), for a hot path that inlines constructor()'s code.

    Such code must store every field of ``cls`` on a fresh builder instance and then assign
    ``__class__ = cls``; a field left out would raise AttributeError when read.
    """
    builder = _builder(cls)
    if builder is None:
        raise TypeError(f"{cls.__name__}: no builder of the same layout")
    return builder


def fast_init(cls: type[_T]) -> type[_T]:
    """Give a frozen slots dataclass a faster ``__init__`` with the same signature and defaults.

    The generated one calls ``object.__setattr__`` per field; this one makes ``self`` an instance
    of the class's builder (see :func:`_builder`), stores the fields as plain attributes and makes
    it an instance of the class again. From five fields on that is faster than calling each slot
    descriptor's ``__set__`` (a third faster with nine), which it does for fewer fields and for a
    subclass (whose layout may differ). Immutability is unchanged: assignment still raises
    FrozenInstanceError. Records are built several times per validated event.
    """
    params, body, namespace = _field_code(cls)
    names = _field_names(cls)
    # Below five fields the two __class__ switches cost more than the descriptor calls they save.
    builder = _builder(cls) if len(names) >= 5 else None
    if builder is None:
        source = f"def __init__(self, {params}):\n{body}"
    else:
        stores = "".join(f"    self.{n} = {n}\n" for n in names)
        namespace.update(_cls=cls, _builder=builder, _set_class=object.__dict__["__class__"].__set__)
        source = (
            f"def __init__(self, {params}):\n"
            "    if type(self) is not _cls:  # a subclass: its layout may differ from the builder's\n"
            + body.replace("    ", "        ")
            + "        return\n"
            "    _set_class(self, _builder)\n"
            f"{stores}"
            "    self.__class__ = _cls\n"
        )
    exec(source, namespace)  # noqa: S102  fixed field names, no input
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    setattr(cls, "__init__", init)  # noqa: B010  (mypy forbids assigning a method directly)
    return cls


def constructor(cls: type[_T]) -> Callable[..., _T]:
    """A function ``(*fields) -> cls`` building the same instance as ``cls(*fields)``, for hot paths.

    Calling a class runs ``type.__call__``, ``object.__new__`` and then ``__init__`` through a slot
    lookup; on CPython 3.11 that dispatch costs about as much as setting the fields. This function
    builds an instance of the class's builder (see :func:`_builder`), stores the fields as plain
    attributes and makes it an instance of ``cls`` by ``__class__`` assignment: indistinguishable
    from ``cls(*fields)``, and about twice as fast as setting each slot through its descriptor.
    Only for classes without ``__post_init__``.
    """
    if hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} has __post_init__; constructor() would skip it")
    builder = _builder(cls)
    if builder is None:
        raise TypeError(f"{cls.__name__}: no builder of the same layout; constructor() cannot serve it")
    params, _, namespace = _field_code(cls)
    name = f"new_{cls.__name__}"
    stores = "".join(f"    self.{n} = {n}\n" for n in _field_names(cls))
    namespace.update(_builder=builder, _cls=cls)
    source = f"def {name}({params}):\n    self = _builder()\n{stores}    self.__class__ = _cls\n    return self\n"
    exec(source, namespace)  # noqa: S102  fixed field names, no input
    make: Callable[..., _T] = namespace[name]
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
