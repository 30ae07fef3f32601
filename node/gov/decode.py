"""Defensive decoding of what governors put on-chain: proposal calldata and governor logs.

Everything here reads bytes that a proposer (any member of any DAO a subject names) chose, so
nothing here may raise past its caller's per-log guard with anything but :class:`UndecodableLog`,
and nothing grows with the input beyond the caps below. Pure (eth_abi only, no web3, no I/O).

Strings are decoded as ``bytes`` (the same ABI layout) and then as UTF-8 with replacement: a
Solidity ``string`` may hold any bytes, and eth_abi's strict UTF-8 decoding would otherwise turn a
proposal description with one invalid byte into an exception (issue 13, finding 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode

from ..core.hashing import keccak

REVOKE_SIGNATURE = "revokeByGovernance(bytes32,string,uint64,bytes32,uint256)"
REVOKE_SELECTOR = keccak(REVOKE_SIGNATURE.encode())[:4]
_REVOKE_ARGS = ["bytes32", "bytes", "uint64", "bytes32", "uint256"]  # keyId read as bytes (see module notes)

ADD_MEMBER_SELECTOR = keccak(b"addMember(address,uint256)")[:4]
REMOVE_MEMBER_SELECTOR = keccak(b"removeMember(address)")[:4]

# Shown and stored per proposal / vote; longer texts are cut (descriptions flagged). A keyreg
# revocation's description is a few lines; these bound what a DAO's proposers and voters can make
# every node hold (with keyreg.gov.indexer's caps on proposals and vote records).
MAX_DESCRIPTION_BYTES = 4 * 1024
MAX_REASON_BYTES = 256
MAX_ACTIONS = 64  # revocations shown per proposal; more are counted, not listed


class UndecodableLog(ValueError):
    """A governor log that does not decode as the event its topic names (the cause is in the message)."""


def _text(raw: bytes, limit: int) -> tuple[str, bool]:
    """UTF-8 text of at most ``limit`` bytes (invalid bytes replaced); True if it was cut."""
    return raw[:limit].decode("utf-8", "replace"), len(raw) > limit


def decode_revocation(calldata: bytes) -> dict[str, Any] | None:
    """The revocation a proposal action performs, or None if it is not canonical revokeByGovernance.

    Canonical means: the calldata is exactly the ABI encoding of its own decoded arguments with
    proposalId 0 (what KeyregGovernor.propose accepts), so what is shown is what executes.
    Never raises.
    """
    if len(calldata) < 4 + 6 * 32 or calldata[:4] != REVOKE_SELECTOR:
        return None
    try:
        subject, key_id, effective_at, reason_hash, proposal_id = abi_decode(_REVOKE_ARGS, calldata[4:])
        if proposal_id != 0 or REVOKE_SELECTOR + abi_encode(_REVOKE_ARGS, [subject, key_id, effective_at,
                                                                           reason_hash, 0]) != calldata:  # fmt: skip
            return None
    except Exception:  # eth_abi's DecodingError family, or anything else: not a revocation we can show
        return None
    out: dict[str, Any] = {
        "subject": "0x" + bytes(subject).hex(),
        "keyId": bytes(key_id).decode("utf-8", "replace"),
        "effectiveAt": int(effective_at),
        "reasonHash": "0x" + bytes(reason_hash).hex(),
    }
    try:
        bytes(key_id).decode("utf-8")
    except UnicodeDecodeError:
        out["keyIdHex"] = "0x" + bytes(key_id).hex()  # not text: the exact bytes the registry hashes
    return out


def decode_membership_change(calldata: bytes) -> dict[str, Any] | None:
    """The membership change a proposal action performs on the DAO's token, or None if it is not
    canonical addMember / removeMember calldata (what KeyregGovernor.propose accepts: exactly the
    head words, a clean address word, a non-zero member and weight). Never raises.

    The caller checks the action's target is the DAO's own token: the same bytes sent elsewhere
    change nothing of this DAO.
    """
    selector = calldata[:4]
    if selector == ADD_MEMBER_SELECTOR and len(calldata) == 4 + 64:
        word, weight = calldata[4:36], int.from_bytes(calldata[36:68], "big")
        action = "add"
    elif selector == REMOVE_MEMBER_SELECTOR and len(calldata) == 4 + 32:
        word, weight, action = calldata[4:36], 0, "remove"
    else:
        return None
    if any(word[:12]) or not any(word[12:]) or (action == "add" and weight == 0):
        return None
    out: dict[str, Any] = {"action": action, "member": "0x" + word[12:].hex()}
    if action == "add":
        out["weight"] = weight
    return out


def decode_action(target: str, calldata: bytes, registry: str, token: str) -> dict[str, Any] | None:
    """One proposal action as shown to voters: a revocation (on ``registry``) or a membership change
    (on ``token``), each with ``"kind"``; None for anything else (KeyregGovernor.propose refuses it)."""
    t = target.lower()
    if t == registry.lower():
        r = decode_revocation(calldata)
        return None if r is None else {"kind": "revocation", **r}
    if t == token.lower():
        m = decode_membership_change(calldata)
        return None if m is None else {"kind": "membership", **m}
    return None


# ---------------------------------------------------------------------------------------------
# Membership token logs (KeyregMembershipToken)

_MEMBER_SIGNATURES = {"MemberAdded": "MemberAdded(address,uint256)", "MemberRemoved": "MemberRemoved(address,uint256)"}
MEMBER_TOPICS: dict[bytes, str] = {keccak(sig.encode()): name for name, sig in _MEMBER_SIGNATURES.items()}


# ---------------------------------------------------------------------------------------------
# Governor logs (OpenZeppelin Governor 5.x events)

# name -> (types of the non-indexed data, in order; indexed inputs, read from topics)
_EVENT_DATA: dict[str, list[str]] = {
    "ProposalCreated": [
        "uint256",
        "address",
        "address[]",
        "uint256[]",
        "bytes[]",
        "bytes[]",
        "uint256",
        "uint256",
        "bytes",
    ],
    "VoteCast": ["uint256", "uint8", "uint256", "bytes"],
    "VoteCastWithParams": ["uint256", "uint8", "uint256", "bytes", "bytes"],
    "ProposalQueued": ["uint256", "uint256"],
    "ProposalExecuted": ["uint256"],
    "ProposalCanceled": ["uint256"],
}
_SIGNATURES = {
    "ProposalCreated": "ProposalCreated(uint256,address,address[],uint256[],string[],bytes[],uint256,uint256,string)",
    "VoteCast": "VoteCast(address,uint256,uint8,uint256,string)",
    "VoteCastWithParams": "VoteCastWithParams(address,uint256,uint8,uint256,string,bytes)",
    "ProposalQueued": "ProposalQueued(uint256,uint256)",
    "ProposalExecuted": "ProposalExecuted(uint256)",
    "ProposalCanceled": "ProposalCanceled(uint256)",
}
TOPICS: dict[bytes, str] = {keccak(sig.encode()): name for name, sig in _SIGNATURES.items()}


@dataclass(frozen=True)
class GovernorLog:
    """One decoded governor event: its name and arguments (strings as capped text)."""

    name: str
    args: dict[str, Any]


def _address(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else "0x" + raw[-20:].hex()


def decode_token_log(topics: list[bytes], data: bytes) -> GovernorLog | None:
    """Decode a membership-token log: MemberAdded / MemberRemoved (member, weight); None for other
    topics; UndecodableLog if malformed."""
    if not topics:
        return None
    name = MEMBER_TOPICS.get(bytes(topics[0]))
    if name is None:
        return None
    if len(topics) < 2 or len(bytes(topics[1])) != 32 or len(bytes(data)) != 32:
        raise UndecodableLog(f"{name}: expected an indexed member and one data word")
    return GovernorLog(
        name, {"member": "0x" + bytes(topics[1])[-20:].hex(), "weight": int.from_bytes(bytes(data), "big")}
    )


def decode_governor_log(topics: list[bytes], data: bytes) -> GovernorLog | None:
    """Decode one log; None if its topic is not one we index; UndecodableLog if it is but is malformed."""
    if not topics:
        return None
    name = TOPICS.get(bytes(topics[0]))
    if name is None:
        return None
    try:
        values = abi_decode(_EVENT_DATA[name], bytes(data))
    except Exception as exc:  # DecodingError family, OverflowError, MemoryError on absurd lengths ...
        raise UndecodableLog(f"{name}: {type(exc).__name__}: {str(exc)[:200]}") from None
    if name == "ProposalCreated":
        pid, proposer, targets, vals, _sigs, calldatas, start, end, description = values
        text, cut = _text(bytes(description), MAX_DESCRIPTION_BYTES)
        return GovernorLog(name, {
            "proposalId": int(pid), "proposer": _address(proposer), "targets": [_address(t) for t in targets],
            "values": [int(v) for v in vals], "calldatas": [bytes(c) for c in calldatas], "voteStart": int(start),
            "voteEnd": int(end), "description": text, "descriptionTruncated": cut,
            "descriptionRaw": bytes(description),  # for queue/execute (the hash needs every byte); not stored
        })  # fmt: skip
    if name in ("VoteCast", "VoteCastWithParams"):
        if len(topics) < 2:
            raise UndecodableLog(f"{name}: the indexed voter topic is missing")
        pid, support, weight, reason = values[:4]
        text, _ = _text(bytes(reason), MAX_REASON_BYTES)
        voter = "0x" + bytes(topics[1])[-20:].hex()
        return GovernorLog(name, {"voter": voter, "proposalId": int(pid), "support": int(support),
                                  "weight": int(weight), "reason": text})  # fmt: skip
    if name == "ProposalQueued":
        return GovernorLog(name, {"proposalId": int(values[0]), "etaSeconds": int(values[1])})
    return GovernorLog(name, {"proposalId": int(values[0])})
