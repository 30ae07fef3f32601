"""Sync web3 plumbing for the DAO client: connections, calls, transactions and revert decoding.

Every failure becomes a :class:`KeyregError`: a contract refusal names the contract's custom error
(:class:`GovernanceRefused`), an unreachable endpoint a :class:`ChainUnavailable` that names the
endpoint by scheme://host:port only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache
from typing import Any, TypeVar

from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import Web3
from web3 import exceptions as w3x

from ..chain.artifacts import Artifact, load
from ..chain.client import BoundedHTTPProvider, map_web3_error, redact_url
from ..core.errors import ChainError, KeyregError
from .errors import GovernanceRefused

T = TypeVar("T")

RPC_TIMEOUT_S = 10.0
RECEIPT_TIMEOUT_S = 30.0
GOVERNOR = "KeyregGovernor"
TIMELOCK_GOVERNOR = "KeyregTimelockGovernor"  # its ABI is a superset of KeyregGovernor's
TOKEN = "KeyregMembershipToken"  # noqa: S105  (a contract name, not a secret)
TIMELOCK = "KeyregTimelock"

# IGovernor.ProposalState, in enum order.
STATES = ("Pending", "Active", "Canceled", "Defeated", "Succeeded", "Queued", "Expired", "Executed")
FINAL_STATES = frozenset({"Canceled", "Defeated", "Expired", "Executed"})
SUPPORT = {"against": 0, "for": 1, "abstain": 2}
SUPPORT_NAMES = {v: k for k, v in SUPPORT.items()}

ZERO_ADDRESS = "0x" + "00" * 20

# ---------------------------------------------------------------------------------------------
# Errors


@cache
def _error_decoders() -> dict[bytes, tuple[str, list[str]]]:
    out: dict[bytes, tuple[str, list[str]]] = {}
    for name in ("KeyRegistry", TIMELOCK_GOVERNOR, TOKEN, TIMELOCK):
        for item in load(name).abi:
            if item.get("type") != "error":
                continue
            types = [i["type"] for i in item.get("inputs", [])]
            out[function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")] = (item["name"], types)
    return out


def decode_revert(data: str | bytes | None) -> tuple[str, list[Any]]:
    """(error name, args) of a custom-error revert payload from any of the DAO or registry contracts."""
    if isinstance(data, str):
        data = bytes.fromhex(data.removeprefix("0x")) if len(data) >= 10 else b""
    if not data or len(data) < 4:
        return "revert", []
    decoder = _error_decoders().get(data[:4])
    if decoder is None:
        return "0x" + data[:4].hex(), []
    name, types = decoder
    try:
        args = list(abi_decode(types, data[4:]))
    except Exception:  # a malformed payload: keep the name
        return name, []
    out: list[Any] = ["0x" + a.hex() if isinstance(a, bytes) else a for a in args]
    if name == "GovernorUnexpectedProposalState" and len(out) >= 2:
        out[1] = STATES[out[1]] if 0 <= out[1] < len(STATES) else out[1]
        out[0] = str(out[0])
    return name, out


_EXPLAIN = {
    "NotAMember": "the voter has no voting power at the proposal's snapshot: not a member of this DAO",
    "NotGovernor": "the subject named another governor: this DAO cannot revoke its keys",
    "NoGovernor": "the subject named no governor at inception: no DAO can revoke its keys",
    "UnknownSubject": "the registry has no anchored inception for this subject",
    "GovernorAlreadyCastVote": "this member has already voted on the proposal",
    "GovernorInvalidSignature": "the ballot signature is not the voter's for this proposal and nonce "
    "(a replayed or already used ballot)",
    "GovernorNonexistentProposal": "the governor has no such proposal",
    "ActionNotAllowed": "a keyreg DAO can only propose revokeByGovernance on its registry, and addMember / "
    "removeMember on its own membership token, with no value",
    "InvalidMembershipChange": "a membership change names the zero address or adds a member with weight 0",
    "OnlyExecutor": "only the DAO's executor (a passed proposal) can change its membership",
    "LastMember": "a DAO keeps at least one member: add the successor before removing the last member",
    "DuplicateMember": "the address is already a member (remove it first to change its weight)",
    "ForeignMembershipToken": "the membership token lets another account change membership: not this DAO's own",
    "AlreadyRevokedEarlier": "the key is already revoked by governance from an earlier or equal time",
    "GovernorInsufficientProposerVotes": "the proposer is not a member (holds no voting power)",
}


def explain(name: str, args: Sequence[Any]) -> str:
    """A sentence for a contract error, naming what was wrong."""
    if name == "GovernorUnexpectedProposalState" and len(args) >= 2:
        return f"the proposal is {args[1]}, which does not allow this (a missed quorum or a lost vote is Defeated)"
    return _EXPLAIN.get(name, f"the contract reverted with {name}{tuple(args) if args else ''}")


def _map_error(exc: BaseException, what: str, endpoint: str) -> KeyregError:
    def refused(name: str, args: list[Any] | None, detail: str | None) -> KeyregError:
        if detail is not None:
            return GovernanceRefused(f"{what}: the contract reverted ({detail})", error=name)
        return GovernanceRefused(f"{what}: {explain(name, args or [])}", error=name, args=args)

    return map_web3_error(exc, what, endpoint, decode_revert, refused)


# ---------------------------------------------------------------------------------------------
# Connection and transactions


def connect(rpc_url: str, timeout_s: float = RPC_TIMEOUT_S) -> Web3:
    """A sync Web3 over HTTP with bounded request timeouts and no provider-level retries."""
    provider = BoundedHTTPProvider(rpc_url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None)
    return Web3(provider)


def _endpoint(w3: Web3) -> str:
    return redact_url(str(getattr(w3.provider, "endpoint_uri", "") or "?"))


def call(w3: Web3, what: str, fn: Callable[[], T]) -> T:
    """Run one read, mapping failures onto the error tree."""
    try:
        return fn()
    except Exception as exc:
        raise _map_error(exc, what, _endpoint(w3)) from None


def transact(w3: Web3, private_key: bytes, fn: Any, what: str, gas: int | None = None) -> dict[str, Any]:
    """Sign and send a contract call from ``private_key``; wait for the receipt.

    Gas is estimated first (so a refused call raises GovernanceRefused with the contract's error
    before anything is paid); the nonce is read fresh ("pending") and re-read once if another
    sender on the same account took it meanwhile.
    """
    account = Account.from_key(private_key)
    endpoint = _endpoint(w3)
    for attempt in range(3):
        try:
            params: dict[str, Any] = {
                "from": account.address,
                "nonce": w3.eth.get_transaction_count(account.address, "pending"),
            }
            if gas is not None:
                params["gas"] = gas
            tx = fn.build_transaction(params)
            signed = account.sign_transaction(tx)
            tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = dict(w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S))
        except w3x.Web3RPCError as exc:
            message = str(exc.rpc_response.get("error", {}).get("message", "")) if exc.rpc_response else str(exc)
            if attempt < 2 and ("nonce" in message.lower() or "underpriced" in message.lower()):
                continue  # the relayer account is shared (e.g. with anchoring): take the next nonce
            raise _map_error(exc, what, endpoint) from None
        except Exception as exc:
            raise _map_error(exc, what, endpoint) from None
        if int(receipt["status"]) != 1:
            raise GovernanceRefused(
                f"{what}: transaction {receipt['transactionHash'].to_0x_hex()} reverted on-chain",
                error="revert",
                tx=receipt["transactionHash"].to_0x_hex(),
            )
        return receipt
    raise ChainError(f"{what}: could not get a nonce for {account.address}")  # pragma: no cover


def deploy_contract(w3: Web3, private_key: bytes, artifact: Artifact, *args: Any) -> Any:
    """Deploy an artifact with constructor ``args``; returns the bound contract."""
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    receipt = transact(w3, private_key, factory.constructor(*args), f"deploy {artifact.name}")
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)
