"""The chain seam: a small async client for the KeyRegistry contract over JSON-RPC.

web3.py's AsyncWeb3 runs on asyncio, not trio, so every call here is sync ``Web3`` inside
``trio.to_thread.run_sync``. A thread cannot be cancelled, so every request has a bounded HTTP
timeout (``request_kwargs={"timeout": ...}``). Two limiters keep the RPC endpoint polite and the
nonce consistent:

- reads share ``read_limiter`` (a few at a time; a cancelled read abandons its thread);
- writes go through ``write_limiter`` = CapacityLimiter(1) and are never abandoned.
  Invariant: ``_nonce`` is the next nonce to use for the relayer account, or None when it must be
  re-read from the chain (at start, and after any failed or dropped send).

Every web3/requests failure is mapped onto :class:`node.core.errors.ChainError` subclasses with a
message that names the endpoint by scheme://host:port only (URLs of hosted RPCs carry API keys in
their path) and never includes the relayer key.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import trio
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import HTTPProvider, Web3
from web3 import exceptions as w3x
from web3.types import RPCResponse

from ..core.codec import check_json_depth
from ..core.errors import ChainError, KeyregError, MalformedEvent
from .artifacts import key_registry

T = TypeVar("T")


class ChainUnavailable(ChainError):
    """The RPC endpoint did not answer (refused, timed out, 5xx). Retrying later may help."""

    code = "chain_unavailable"


class TransactionReverted(ChainError):
    """The contract refused the call (at estimation or on-chain); ``details['error']`` names why."""

    code = "chain_revert"


class TransactionDropped(ChainError):
    """A sent transaction vanished (never mined: replaced, evicted, or the chain lost it)."""

    code = "chain_dropped"


class NoRelayer(ChainError):
    """A write was asked for but the node has no relayer key configured."""

    code = "chain_no_relayer"


def redact_url(url: str) -> str:
    """scheme://host:port of an RPC URL: paths, queries and user info often hold API keys."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"
    except ValueError:
        return "<unparseable rpc url>"


Refusal = Callable[[str, list[Any] | None, str | None], KeyregError]


def map_web3_error(
    exc: BaseException,
    what: str,
    endpoint: str,
    decode_revert: Callable[[str | None], tuple[str, list[Any]]],
    refused: Refusal,
) -> KeyregError:
    """The one mapping of web3/requests failures to the error tree, with secret-free messages.

    Transport failures become :class:`ChainUnavailable` (retry may help) or :class:`ChainError`;
    a contract's refusal is built by ``refused(name, args, detail)``: ``name``/``args`` from the
    custom error (``detail`` None), or name "revert" with the node's message as ``detail``.
    """
    if isinstance(exc, KeyregError):
        return exc
    if isinstance(exc, requests.ConnectionError | requests.Timeout | w3x.ProviderConnectionError | ConnectionError):
        return ChainUnavailable(f"{what}: RPC endpoint {endpoint} is unreachable ({type(exc).__name__})")
    if isinstance(exc, w3x.RequestTimedOut | w3x.TimeExhausted):
        return ChainUnavailable(f"{what}: RPC endpoint {endpoint} timed out")
    if isinstance(exc, requests.HTTPError):
        status = exc.response.status_code if exc.response is not None else "?"
        return ChainUnavailable(f"{what}: RPC endpoint {endpoint} answered HTTP {status}")
    if isinstance(exc, w3x.ContractCustomError):
        name, args = decode_revert(exc.data if isinstance(exc.data, str) else None)
        return refused(name, args, None)
    if isinstance(exc, w3x.ContractLogicError):
        return refused("revert", None, str(exc.message))
    if isinstance(exc, w3x.Web3RPCError):
        message = str(exc.rpc_response.get("error", {}).get("message", "")) if exc.rpc_response else str(exc)
        return ChainError(f"{what}: RPC error from {endpoint}: {message[:200]}")
    return ChainError(f"{what}: {type(exc).__name__}: {str(exc)[:200]}")


class BoundedHTTPProvider(HTTPProvider):
    """web3's HTTP provider, refusing an RPC answer nested deeper than keyreg's JSON bound before
    web3's stdlib parser recurses into it: py_ecc raises the recursion limit to 100,000, so a deep
    answer from a hostile RPC endpoint would overflow the C stack (issue 13, finding 13)."""

    @staticmethod
    def decode_rpc_response(raw_response: bytes) -> RPCResponse:
        try:
            check_json_depth(raw_response)
        except MalformedEvent as exc:
            raise ChainError(f"RPC answer refused: {exc.message}") from None
        return HTTPProvider.decode_rpc_response(raw_response)


@dataclass(frozen=True, slots=True)
class BlockRef:
    """A block's identity: what reorg detection compares."""

    number: int
    hash: bytes
    parent_hash: bytes
    timestamp: int


@dataclass(frozen=True, slots=True)
class ChainLog:
    """A decoded registry event."""

    name: str  # "HeadAnchored" | "BatchAnchored" | "GovernanceRevoked" | "HeadReplaced" | ...
    args: dict[str, Any]
    block_number: int
    block_hash: bytes
    log_index: int
    tx_hash: bytes

    @property
    def position(self) -> int:
        """block * 1_000_000 + log index: the on-chain order used by fork choice."""
        return self.block_number * 1_000_000 + self.log_index


def _error_decoders(abi: list[dict[str, Any]]) -> dict[bytes, tuple[str, list[str]]]:
    out: dict[bytes, tuple[str, list[str]]] = {}
    for item in abi:
        if item.get("type") != "error":
            continue
        types = [i["type"] for i in item.get("inputs", [])]
        selector = function_signature_to_4byte_selector(f"{item['name']}({','.join(types)})")
        out[selector] = (item["name"], types)
    return out


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return "0x" + v.hex()
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


class ChainClient:
    """Reads and writes the KeyRegistry contract; async methods for trio code."""

    def __init__(
        self,
        rpc_url: str,
        registry_address: str,
        *,
        timeout_s: float = 10.0,
        relayer_key: bytes | None = None,
        read_concurrency: int = 4,
    ) -> None:
        self.endpoint = redact_url(rpc_url)
        # No provider-level retries: the services above retry with their own backoff and status.
        provider = BoundedHTTPProvider(
            rpc_url, request_kwargs={"timeout": timeout_s}, exception_retry_configuration=None
        )
        self.w3 = Web3(provider)
        self.address = Web3.to_checksum_address(registry_address)
        abi = key_registry().abi
        self.contract = self.w3.eth.contract(address=self.address, abi=abi)
        self._errors = _error_decoders(abi)
        self._events = {
            Web3.keccak(text=f"{e['name']}({','.join(i['type'] for i in e['inputs'])})"): e["name"]
            for e in abi
            if e.get("type") == "event"
        }
        self._account = Account.from_key(relayer_key) if relayer_key else None
        self.read_limiter = trio.CapacityLimiter(read_concurrency)
        self.write_limiter = trio.CapacityLimiter(1)
        self._nonce: int | None = None

    @property
    def relayer_address(self) -> str | None:
        """The account that pays for anchoring, or None (watch-only)."""
        return self._account.address if self._account else None

    # ------------------------------------------------------------------ plumbing

    def _map_error(self, exc: BaseException, what: str) -> KeyregError:
        """Turn any web3/requests failure into a ChainError with a clear, secret-free message."""

        def reverted(name: str, args: list[Any] | None, detail: str | None) -> KeyregError:
            if detail is not None:
                return TransactionReverted(f"{what}: the registry contract reverted ({detail})", error=name)
            return TransactionReverted(f"{what}: the registry contract reverted with {name}", error=name, args=args)

        return map_web3_error(exc, what, self.endpoint, self.decode_revert, reverted)

    def decode_revert(self, data: str | None) -> tuple[str, list[Any]]:
        """Name and arguments of a custom-error revert payload (0x-hex)."""
        if not data or len(data) < 10:
            return "revert", []
        raw = bytes.fromhex(data.removeprefix("0x"))
        decoder = self._errors.get(raw[:4])
        if decoder is None:
            return "0x" + raw[:4].hex(), []
        name, types = decoder
        try:
            return name, [_jsonable(v) for v in abi_decode(types, raw[4:])]
        except Exception:  # a malformed payload from the node: keep the name
            return name, []

    async def _read(self, fn: Callable[[], T], what: str) -> T:
        def run() -> T:
            try:
                return fn()
            except Exception as exc:
                raise self._map_error(exc, what) from None

        return await trio.to_thread.run_sync(run, limiter=self.read_limiter, abandon_on_cancel=True)

    # ------------------------------------------------------------------ reads

    async def chain_id(self) -> int:
        """eth_chainId."""
        return await self._read(lambda: int(self.w3.eth.chain_id), "eth_chainId")

    async def block_number(self) -> int:
        """The latest block number."""
        return await self._read(lambda: int(self.w3.eth.block_number), "eth_blockNumber")

    async def block(self, number: int) -> BlockRef | None:
        """A block's number, hash and parent hash; None if the chain has no such block (yet)."""

        def fetch() -> BlockRef | None:
            try:
                b = self.w3.eth.get_block(number)
            except w3x.BlockNotFound:
                return None
            return BlockRef(int(b["number"]), bytes(b["hash"]), bytes(b["parentHash"]), int(b["timestamp"]))

        return await self._read(fetch, f"eth_getBlockByNumber({number})")

    async def has_code(self) -> bool:
        """True if a contract is deployed at the registry address."""
        return await self._read(lambda: len(self.w3.eth.get_code(self.address)) > 0, "eth_getCode")

    async def logs(self, from_block: int, to_block: int) -> list[ChainLog]:
        """Decoded registry events in [from_block, to_block], in chain order."""

        def fetch() -> list[ChainLog]:
            raw = self.w3.eth.get_logs({"address": self.address, "fromBlock": from_block, "toBlock": to_block})
            out = []
            for log in raw:
                if not log["topics"]:
                    continue
                name = self._events.get(bytes(log["topics"][0]))
                if name is None:
                    continue
                data = getattr(self.contract.events, name)().process_log(log)
                out.append(
                    ChainLog(
                        name=name,
                        args=dict(data["args"]),
                        block_number=int(log["blockNumber"]),
                        block_hash=bytes(log["blockHash"]),
                        log_index=int(log["logIndex"]),
                        tx_hash=bytes(log["transactionHash"]),
                    )
                )
            out.sort(key=lambda lg: lg.position)
            return out

        return await self._read(fetch, f"eth_getLogs({from_block}..{to_block})")

    async def head_of(self, subject: bytes) -> tuple[int, bytes]:
        """The directly anchored (seq, digest) of a subject; digest is 32 zero bytes if none."""

        def fetch() -> tuple[int, bytes]:
            seq, digest = self.contract.functions.headOf(subject).call()
            return int(seq), bytes(digest)

        return await self._read(fetch, "headOf")

    async def batch_of(self, root: bytes) -> int:
        """The block in which a batch root was first anchored (0 = never)."""
        return await self._read(lambda: int(self.contract.functions.batchOf(root).call()[0]), "batchOf")

    async def receipt(self, tx_hash: bytes) -> dict[str, Any] | None:
        """A transaction's receipt, or None while it is pending (or unknown)."""

        def fetch() -> dict[str, Any] | None:
            try:
                return dict(self.w3.eth.get_transaction_receipt(tx_hash))
            except w3x.TransactionNotFound:
                return None

        return await self._read(fetch, "eth_getTransactionReceipt")

    async def is_pending(self, tx_hash: bytes) -> bool:
        """True if the transaction can still be mined: known to the node and not stuck behind a nonce gap.

        A gap appears when the chain loses transactions we sent before this one (a reorg, an RPC
        node restarted from an older state): the account's pending nonce is then below this
        transaction's nonce, and it would wait in the pool forever.
        """

        def fetch() -> bool:
            try:
                tx = self.w3.eth.get_transaction(tx_hash)
            except w3x.TransactionNotFound:
                return False
            if tx.get("blockNumber") is not None:
                return True
            sender = tx["from"]
            return int(tx["nonce"]) <= int(self.w3.eth.get_transaction_count(sender, "pending"))

        return await self._read(fetch, "eth_getTransactionByHash")

    # ------------------------------------------------------------------ writes

    def reset_nonce(self) -> None:
        """Forget the tracked nonce; the next send re-reads it from the chain."""
        self._nonce = None

    async def send(self, function: str, args: Sequence[Any], gas: int | None = None) -> bytes:
        """Sign and send a registry call from the relayer; returns the tx hash.

        Without ``gas`` the call is estimated first, so a call the contract would refuse raises
        :class:`TransactionReverted` before anything is paid. With ``gas`` it is sent as is (a
        revert then shows in the receipt).
        """
        if self._account is None:
            raise NoRelayer("no relayer key configured: set [chain] relayer_keystore to anchor")
        account = self._account

        def run() -> bytes:
            try:
                if self._nonce is None:
                    self._nonce = int(self.w3.eth.get_transaction_count(account.address, "pending"))
                params: dict[str, Any] = {"from": account.address, "nonce": self._nonce}
                if gas is not None:
                    params["gas"] = gas
                tx = getattr(self.contract.functions, function)(*args).build_transaction(params)
                signed = account.sign_transaction(tx)
                tx_hash = bytes(self.w3.eth.send_raw_transaction(signed.raw_transaction))
            except Exception as exc:
                self._nonce = None  # unknown whether it was consumed: re-read next time
                raise self._map_error(exc, function) from None
            self._nonce += 1
            return tx_hash

        return await trio.to_thread.run_sync(run, limiter=self.write_limiter)

    async def wait_receipt(
        self, tx_hash: bytes, poll_s: float = 0.5, timeout_s: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> dict[str, Any]:
        """Poll for a receipt; raise TransactionReverted on status 0, TransactionDropped if it vanished."""
        deadline = clock() + timeout_s
        while True:
            receipt = await self.receipt(tx_hash)
            if receipt is not None:
                if int(receipt["status"]) != 1:
                    raise TransactionReverted(
                        f"transaction 0x{tx_hash.hex()} reverted on-chain", error="revert", tx="0x" + tx_hash.hex()
                    )
                return receipt
            if not await self.is_pending(tx_hash):
                self.reset_nonce()
                raise TransactionDropped(
                    f"transaction 0x{tx_hash.hex()} can no longer be mined (lost, or stuck behind a nonce gap)"
                )
            if clock() > deadline:
                self.reset_nonce()
                raise TransactionDropped(f"transaction 0x{tx_hash.hex()} not mined within {timeout_s:.0f}s")
            await trio.sleep(poll_s)

    async def anchor_batch(self, root: bytes, count: int) -> bytes:
        """Send anchorBatch(root, count); returns the tx hash."""
        return await self.send("anchorBatch", [root, count])

    async def anchor_events(self, inputs: Sequence[tuple[Any, ...]], gas: int | None = None) -> bytes:
        """Send anchorEvents(inputs) (KeyRegistry.EventInput tuples); returns the tx hash."""
        return await self.send("anchorEvents", [list(inputs)], gas=gas)
