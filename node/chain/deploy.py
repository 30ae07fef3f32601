"""Local chain plumbing: spawn anvil, deploy contracts, and turn signed events into registry calls.

Used by ``keyreg chain deploy``, the devnet, the contract tests and ``bench/gas.py``. Everything is
sync web3 (the node runs it in ``trio.to_thread``); every RPC has a bounded timeout.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from web3 import Web3

from ..core.eip712 import TYPE_HASH, hash_operator_set, hash_published_key, hash_strings
from ..core.hashing import keccak
from ..core.records import (
    KIND_NUMBER,
    ZERO32,
    Delegation,
    Inception,
    KeyRetirement,
    OperatorSet,
    PublishedKey,
    Revocation,
    Rotation,
    SignedEvent,
    Update,
)
from .artifacts import Artifact, contracts_dir, key_registry

# anvil's default mnemonic, account 0 (public test key, never for real funds).
ANVIL_DEV_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
ANVIL_CHAIN_ID = 31337
RPC_TIMEOUT_S = 10


# ---------------------------------------------------------------------------------------------
# anvil


def anvil_binary() -> Path:
    """Path of the native anvil binary installed by ``npm ci --prefix contracts``."""
    override = os.environ.get("KEYREG_ANVIL")
    if override:
        return Path(override)
    return contracts_dir() / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rpc(url: str, method: str, params: list[Any], timeout: float = RPC_TIMEOUT_S) -> Any:
    payload = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    answer = httpx.post(url, json=payload, timeout=timeout).json()
    if "error" in answer:
        raise RuntimeError(f"{method}: {answer['error']}")
    return answer["result"]


@dataclass
class AnvilProcess:
    """A running anvil, owned by this process; stop() kills it by PID."""

    process: subprocess.Popen[bytes]
    url: str
    port: int
    chain_id: int
    args: list[str] = field(default_factory=list)

    def rpc(self, method: str, *params: Any) -> Any:
        """One raw JSON-RPC call (evm_snapshot, evm_revert, anvil_mine, ...)."""
        return _rpc(self.url, method, list(params))

    def stop(self) -> None:
        """Terminate anvil (SIGTERM, then SIGKILL after 5 s) and reap it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)


def start_anvil(
    port: int | None = None,
    chain_id: int = ANVIL_CHAIN_ID,
    extra_args: Sequence[str] = (),
    startup_timeout_s: float = 10.0,
) -> AnvilProcess:
    """Spawn the anvil binary on 127.0.0.1 and wait (with a deadline) until it answers RPC."""
    binary = anvil_binary()
    if not binary.exists():
        raise FileNotFoundError(f"anvil not found at {binary}: run `npm ci --prefix contracts`")
    attempts = 1 if port is not None else 3
    last_error = ""
    for _ in range(attempts):
        p = port if port is not None else free_port()
        args = [str(binary), "--host", "127.0.0.1", "--port", str(p), "--chain-id", str(chain_id), "--silent"]
        args += list(extra_args)
        proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{p}"
        deadline = time.monotonic() + startup_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:  # exited: most likely the port was taken meanwhile
                last_error = (proc.stderr.read() if proc.stderr else b"").decode(errors="replace")[-400:]
                break
            try:
                if int(_rpc(url, "eth_chainId", [], timeout=1), 16) == chain_id:
                    if proc.stderr is not None:
                        proc.stderr.close()
                    return AnvilProcess(proc, url, p, chain_id, args)
            except (httpx.TransportError, OSError):
                time.sleep(0.02)
        else:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
            raise TimeoutError(f"anvil did not answer on {url} within {startup_timeout_s}s")
    raise RuntimeError(f"anvil failed to start: {last_error.strip() or 'exited early'}")


@contextlib.contextmanager
def running_anvil(**kwargs: Any) -> Iterator[AnvilProcess]:
    """Context manager around :func:`start_anvil` that always stops it."""
    anvil = start_anvil(**kwargs)
    try:
        yield anvil
    finally:
        anvil.stop()


# ---------------------------------------------------------------------------------------------
# web3 and deployment


def connect(url: str, timeout_s: float = RPC_TIMEOUT_S) -> Web3:
    """A sync Web3 over HTTP with a bounded request timeout."""
    return Web3(Web3.HTTPProvider(url, request_kwargs={"timeout": timeout_s}))


def send_transaction(w3: Web3, private_key: str, tx: dict[str, Any]) -> Any:
    """Sign ``tx`` with ``private_key``, send it, wait for the receipt; raises if it reverted."""
    account = Account.from_key(private_key)
    tx = dict(tx)
    tx.setdefault("from", account.address)
    tx.setdefault("chainId", w3.eth.chain_id)
    tx.setdefault("nonce", w3.eth.get_transaction_count(account.address, "pending"))
    if "gas" not in tx:
        tx["gas"] = int(w3.eth.estimate_gas(tx) * 1.2) + 10_000
    if "maxFeePerGas" not in tx and "gasPrice" not in tx:
        base = w3.eth.get_block("latest").get("baseFeePerGas", 0)
        tx["maxPriorityFeePerGas"] = 1
        tx["maxFeePerGas"] = 2 * int(base) + 1
    signed = account.sign_transaction(tx)
    tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RPC_TIMEOUT_S)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {tx_hash.to_0x_hex()} reverted")
    return receipt


def deploy(w3: Web3, artifact: Artifact, private_key: str = ANVIL_DEV_KEY, *args: Any) -> Any:
    """Deploy an artifact; returns a bound web3 contract."""
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    account = Account.from_key(private_key)
    tx = factory.constructor(*args).build_transaction({"from": account.address})
    receipt = send_transaction(w3, private_key, tx)
    return w3.eth.contract(address=receipt["contractAddress"], abi=artifact.abi)


def deploy_registry(w3: Web3, private_key: str = ANVIL_DEV_KEY) -> Any:
    """Deploy KeyRegistry; returns the bound contract (its address is the EIP-712 verifyingContract)."""
    return deploy(w3, key_registry(), private_key)


# ---------------------------------------------------------------------------------------------
# Signed events -> registry call arguments
#
# The contract takes the fields it enforces explicitly and the rest as already-hashed EIP-712
# member encodings (docs/contracts.md section 1); these helpers produce exactly those words.


def _word(v: int) -> bytes:
    return v.to_bytes(32, "big")


def hash_string(s: str) -> bytes:
    """EIP-712 encoding of a string member."""
    return keccak(s.encode())


def hash_keys(keys: Sequence[PublishedKey]) -> bytes:
    """EIP-712 encoding of a PublishedKey[] member."""
    return keccak(b"".join(hash_published_key(k) for k in keys))


def hash_retirements(items: Sequence[KeyRetirement]) -> bytes:
    """EIP-712 encoding of a KeyRetirement[] member."""
    th = TYPE_HASH["KeyRetirement"]
    return keccak(b"".join(keccak(th + hash_string(r.key_id) + _word(r.not_after)) for r in items))


def _checksum(a: bytes) -> str:
    return Web3.to_checksum_address(a)


def operator_set_arg(o: OperatorSet) -> tuple[list[str], int, bytes, int, int]:
    """The KeyRegistry.OperatorSet tuple of an operator set (purposes hashed as EIP-712 string[]).
    NO_OPERATORS gives the one encoding of "none": ([], 0, keccak256(""), 0, 0)."""
    return ([_checksum(a) for a in o.operators], o.threshold, hash_strings(o.purposes), o.max_validity, o.max_keys)


# The OperatorSet tuple of an update or a revocation in anchorEvents / supersede: unused, all zero.
UNUSED_OPERATOR_SET: tuple[list[str], int, bytes, int, int] = ([], 0, ZERO32, 0, 0)


def event_body(signed: SignedEvent) -> list[bytes]:
    """The four ``body`` words of an event (see KeyRegistry.EventInput)."""
    e = signed.event
    if isinstance(e, Inception):
        return [e.next_commitment, b"\x00" * 12 + e.governor, hash_keys(e.keys), hash_string(e.metadata)]
    if isinstance(e, Update):
        return [hash_keys(e.publish), hash_retirements(e.retire), _word(int(e.set_metadata)), hash_string(e.metadata)]
    if isinstance(e, Rotation):
        return [e.next_commitment, b"\x00" * 12 + e.governor, ZERO32, ZERO32]
    if isinstance(e, Revocation):
        return [hash_string(e.key_id), _word(e.effective_at), hash_string(e.reason), ZERO32]
    if isinstance(e, Delegation):
        return [ZERO32, ZERO32, ZERO32, ZERO32]
    raise TypeError(f"not an event: {type(e).__name__}")


def displaced_body(signed: SignedEvent) -> list[bytes]:
    """The ``displacedBody`` words of a head that recoverRotation or supersede replaces: an
    update's or revocation's body, or [hashStruct(OperatorSet), 0, 0, 0] for a delegation."""
    e = signed.event
    if isinstance(e, Delegation):
        return [hash_operator_set(e.operators), ZERO32, ZERO32, ZERO32]
    if isinstance(e, Update | Revocation):
        return event_body(signed)
    raise TypeError(f"a {e.kind} head is never displaced")


def _signing_set(e: Any, signers: Sequence[bytes] | None, threshold: int | None) -> tuple[tuple[bytes, ...], int]:
    if isinstance(e, Inception | Rotation):
        return e.controllers, e.threshold  # their own (revealed) set signs them
    if signers is None or threshold is None:
        raise ValueError(f"a {e.kind} needs the signing set in force and its threshold")
    return tuple(signers), threshold


def call_for(
    signed: SignedEvent,
    controllers: Sequence[bytes] | None = None,
    threshold: int | None = None,
    *,
    by_operators: bool = False,
) -> tuple[str, list[Any]]:
    """(function name, args) anchoring one signed event directly.

    For an update, revocation or delegation, ``controllers``/``threshold`` are the subject's
    *current* controller set (the contract checks them against its stored commitment); for an
    operator-signed update (``by_operators``) they are the operator set in force and its
    threshold (anchorOperatorUpdate). Inceptions and rotations carry their own set.
    """
    e = signed.event
    sigs = b"".join(signed.signatures)
    if by_operators and not isinstance(e, Update):
        raise ValueError("operators sign updates only")
    if isinstance(e, Inception):
        body = event_body(signed)
        ctrl = [_checksum(c) for c in e.controllers]
        governor = _checksum(e.governor)
        return "anchorInception", [
            e.timestamp, ctrl, e.threshold, body[0], governor, operator_set_arg(e.operators), body[2], body[3], sigs,
        ]  # fmt: skip
    if isinstance(e, Rotation):
        ctrl = [_checksum(c) for c in e.controllers]
        return "anchorRotation", [
            e.subject, e.seq, e.prev, e.timestamp, ctrl, e.threshold, e.next_commitment, _checksum(e.governor),
            operator_set_arg(e.operators), sigs,
        ]  # fmt: skip
    members, thr = _signing_set(e, controllers, threshold)
    listed = [_checksum(c) for c in members]
    if isinstance(e, Delegation):
        return "anchorDelegation", [
            e.subject, e.seq, e.prev, e.timestamp, operator_set_arg(e.operators), listed, thr, sigs,
        ]  # fmt: skip
    if by_operators:
        return "anchorOperatorUpdate", [e.subject, e.seq, e.prev, e.timestamp, event_body(signed), listed, thr, sigs]
    return "anchorUpdate", [KIND_NUMBER[e.kind], e.subject, e.seq, e.prev, e.timestamp, event_body(signed), listed, thr,
                            sigs]  # fmt: skip


def event_input(
    signed: SignedEvent,
    controllers: Sequence[bytes] | None = None,
    threshold: int | None = None,
    *,
    by_operators: bool = False,
) -> tuple[Any, ...]:
    """One KeyRegistry.EventInput tuple for ``anchorEvents`` / ``supersede`` (signing set as in
    :func:`call_for`)."""
    e = signed.event
    if by_operators and not isinstance(e, Update):
        raise ValueError("operators sign updates only")
    members, thr = _signing_set(e, controllers, threshold)
    if isinstance(e, Inception):
        subject, seq, prev = ZERO32, 0, ZERO32
    else:
        subject, seq, prev = e.subject, e.seq, e.prev
    ops = operator_set_arg(e.operators) if isinstance(e, Inception | Rotation | Delegation) else UNUSED_OPERATOR_SET
    return (
        KIND_NUMBER[e.kind],
        subject,
        seq,
        prev,
        e.timestamp,
        event_body(signed),
        [_checksum(c) for c in members],
        thr,
        by_operators,
        ops,
        b"".join(signed.signatures),
    )


def recovery_call(signed_rotation: SignedEvent, displaced: SignedEvent) -> tuple[str, list[Any]]:
    """(function name, args) for ``recoverRotation``: a rotation replacing the anchored head ``displaced``
    (an update, a key-level revocation or a delegation at the same seq)."""
    name, args = call_for(signed_rotation)
    if name != "anchorRotation":
        raise TypeError("recovery needs a rotation")
    d = displaced.event
    return "recoverRotation", [*args, KIND_NUMBER[d.kind], d.timestamp, displaced_body(displaced)]


def supersede_call(
    signed: SignedEvent,
    displaced: SignedEvent,
    controllers: Sequence[bytes] | None = None,
    threshold: int | None = None,
) -> tuple[str, list[Any]]:
    """(function name, args) for ``supersede``: a controller-signed ``signed`` at the anchored head's
    seq replacing ``displaced``, an operator-signed update (``controllers``/``threshold``: the
    controller set in force, for an update, revocation or delegation)."""
    if not isinstance(displaced.event, Update):
        raise TypeError("only an operator-signed update head is superseded")
    return "supersede", [event_input(signed, controllers, threshold), displaced.event.timestamp, event_body(displaced)]
