"""What a published key's purposes mean outside the registry: its JWK ``use``/``key_ops`` (RFC 7517)
and its verification relationships in a DID document (W3C DID Core 5.3). docs/protocol.md 9.5.

Purposes are free strings in the protocol (5.5) and the verdict compares them verbatim (9.4); this
table is the only place that gives some of them a meaning, so that the JWKS, the DID document and the
offline verifier's JWKS of one subject always agree on what a key is for. A purpose the table does not
name gives a key no ``use``, no ``key_ops`` and no relationship: it is listed, and it is not vouched for.
The table does not check that a key's algorithm suits its purpose; the publisher chose both.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class PurposeMeaning:
    """One row of the table: the JWK ``use``, the public key's ``key_ops`` and the DID relationships."""

    use: str
    key_ops: tuple[str, ...]
    relationships: tuple[str, ...]


# The DID verification relationships a purpose can grant, in the order a DID document lists them.
# capabilityInvocation/-Delegation are absent on purpose: a subject's DID document is changed by its
# controllers' events, never by a published key.
DID_RELATIONSHIPS = ("authentication", "assertionMethod", "keyAgreement")

_SIGN = PurposeMeaning("sig", ("verify",), ("authentication", "assertionMethod"))
_AUTHENTICATE = PurposeMeaning("sig", ("verify",), ("authentication",))
_ASSERT = PurposeMeaning("sig", ("verify",), ("assertionMethod",))
_ENCRYPT = PurposeMeaning("enc", ("encrypt", "wrapKey"), ("keyAgreement",))

PURPOSES: Mapping[str, PurposeMeaning] = MappingProxyType(
    {
        "sig": _SIGN,
        "sign": _SIGN,
        "signing": _SIGN,
        "jwt": _SIGN,
        "token": _SIGN,
        "auth": _AUTHENTICATE,
        "authentication": _AUTHENTICATE,
        "assert": _ASSERT,
        "assertion": _ASSERT,
        "assertionmethod": _ASSERT,
        "enc": _ENCRYPT,
        "encrypt": _ENCRYPT,
        "encryption": _ENCRYPT,
        "keyagreement": _ENCRYPT,
    }
)


def jwk_usage(purposes: Iterable[str]) -> dict[str, str | list[str]]:
    """The JWK members that say what a key with these purposes is for.

    ``{"use": u}`` when every purpose the table names has use ``u``; ``{"key_ops": [...]}`` (sorted)
    when they mix signing and encryption, since RFC 7517 4.3 wants ``use`` and ``key_ops`` not both
    and ``use`` holds one value; ``{}`` when the table names none of them.
    """
    meanings = [PURPOSES[p] for p in purposes if p in PURPOSES]
    uses = {m.use for m in meanings}
    if not uses:
        return {}
    if len(uses) == 1:
        return {"use": uses.pop()}
    return {"key_ops": sorted({op for m in meanings for op in m.key_ops})}


def did_relationships(purposes: Iterable[str]) -> tuple[str, ...]:
    """The DID verification relationships of a key with these purposes, in :data:`DID_RELATIONSHIPS` order."""
    granted = {r for p in purposes if p in PURPOSES for r in PURPOSES[p].relationships}
    return tuple(r for r in DID_RELATIONSHIPS if r in granted)
