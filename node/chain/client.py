"""The chain seam: a small async client for the KeyRegistry contract over JSON-RPC.

web3.py's AsyncWeb3 runs on asyncio, not trio, so every call here is sync ``Web3`` inside
``trio.to_thread.run_sync``. A thread cannot be cancelled, so every request has a total deadline
(``[chain] rpc_timeout_s``, enforced by :class:`RpcTransport`'s watchdog whatever the endpoint
trickles), its answer a byte cap, and the process a cap on RPC calls in flight. Two limiters keep
the RPC endpoint polite and the nonce consistent:

- reads share ``read_limiter`` (a few at a time; a cancelled read abandons its thread);
- writes go through ``write_limiter`` = CapacityLimiter(1) and are never abandoned.
  Invariant: ``_nonce`` is the next nonce to use for the relayer account, or None when it must be
  re-read from the chain (at start, and after any failed or dropped send).

Every web3/requests failure is mapped onto :class:`keyreg.core.errors.ChainError` subclasses with a
message that names the endpoint by scheme://host:port only (URLs of hosted RPCs carry API keys in
their path) and never includes the relayer key.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import http.client
import itertools
import re
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import certifi
import requests
import trio
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from web3 import HTTPProvider, Web3
from web3 import exceptions as w3x
from web3.types import RPCEndpoint, RPCResponse

from ..core.codec import check_json_depth
from ..core.errors import ChainError, KeyregError, MalformedEvent
from ..core.hashing import keccak
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


# ---------------------------------------------------------------------------------------------
# The HTTP transport of every JSON-RPC call (issue 13 review, M3)
#
# requests' ``timeout`` bounds each socket read, not a call: an endpoint that trickles a byte
# before each read timeout holds a call (and its worker thread) for as long as it likes, and the
# body it sends has no size bound. So each call here has a total deadline: one watchdog thread
# shuts the call's socket down when the deadline passes, which ends whatever recv/send/TLS step
# the calling thread is blocked in. The answer is read in chunks and refused past a byte cap.
# The number of calls in flight in the process is capped too, so calls abandoned by cancelled
# trio tasks (supervisor restarts) cannot pile up threads.

DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024  # [chain] rpc_max_answer_bytes
DEFAULT_MAX_IN_FLIGHT = 16  # [chain] rpc_max_in_flight: RPC calls in flight in this process
_READ_CHUNK = 64 * 1024
_IDLE_KEPT = 4  # keep-alive connections kept per endpoint


class _Watchdog:
    """Shuts sockets down at their call's deadline. One daemon thread for the process."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, socket.socket]] = []
        self._live: set[int] = set()
        self._fired: set[int] = set()
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None

    def watch(self, sock: socket.socket, deadline: float) -> int:
        with self._cond:
            token = next(self._ids)
            heapq.heappush(self._heap, (deadline, token, sock))
            self._live.add(token)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="keyreg-rpc-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
            return token

    def release(self, token: int) -> bool:
        """Stop watching; True if the deadline had already fired (the socket is dead)."""
        with self._cond:
            self._live.discard(token)
            if token in self._fired:
                self._fired.discard(token)
                return True
            return False

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # released before its deadline
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, token, sock = heapq.heappop(self._heap)
                self._live.discard(token)
                self._fired.add(token)
                # Under the lock: release() of this token cannot run in between, so a connection
                # returned to the pool is never shut down by a deadline of an earlier call.
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain-socket method, also for TLS


_WATCHDOG = _Watchdog()
_in_flight_lock = threading.Lock()
_in_flight = 0


def rpc_calls_in_flight() -> int:
    """RPC calls being made right now in this process (all endpoints)."""
    return _in_flight


def _close_idle(idle: list[http.client.HTTPConnection], lock: threading.Lock) -> None:
    with lock:
        conns = list(idle)
        idle.clear()
    for conn in conns:
        conn.close()


class RpcTransport:
    """POSTs JSON-RPC bodies to one endpoint: total deadline, answer byte cap, keep-alive."""

    def __init__(self, url: str, timeout_s: float, max_answer_bytes: int, max_in_flight: int) -> None:
        self.endpoint = redact_url(url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ChainError(f"RPC endpoint {self.endpoint}: only http:// and https:// URLs are supported")
        self.tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if self.tls else 80)
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.headers = {
            "Content-Type": "application/json",
            "Accept-Encoding": "identity",  # the cap counts the bytes we parse
            "Host": parts.netloc.rpartition("@")[2],
        }
        if parts.username is not None:
            user = unquote(parts.username)
            password = unquote(parts.password or "")
            self.headers["Authorization"] = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.timeout_s = timeout_s
        self.max_answer_bytes = max_answer_bytes
        self.max_in_flight = max_in_flight
        self._idle: list[http.client.HTTPConnection] = []
        self._idle_lock = threading.Lock()
        self._tls_context: ssl.SSLContext | None = None
        # Idle connections are closed when the transport is collected (a weakref callback runs
        # before the sockets' own finalizers, even inside a reference cycle).
        weakref.finalize(self, _close_idle, self._idle, self._idle_lock)

    def close(self) -> None:
        """Close the idle keep-alive connections (a call in progress closes its own when done)."""
        _close_idle(self._idle, self._idle_lock)

    def post(self, body: bytes) -> bytes:
        """The answer's body; ChainUnavailable if the endpoint fails or is too slow, ChainError if too big."""
        global _in_flight
        with _in_flight_lock:
            if _in_flight >= self.max_in_flight:
                raise ChainUnavailable(
                    f"RPC endpoint {self.endpoint}: {_in_flight} calls already in flight (cap {self.max_in_flight})"
                )
            _in_flight += 1
        try:
            return self._post(body, time.monotonic() + self.timeout_s)
        finally:
            with _in_flight_lock:
                _in_flight -= 1

    def _post(self, body: bytes, deadline: float, pooled: bool = True) -> bytes:
        conn: http.client.HTTPConnection | None = None
        if pooled:
            with self._idle_lock:
                conn = self._idle.pop() if self._idle else None
        reused = conn is not None
        token: int | None = None
        reusable = retry = fired = False
        try:
            if conn is None:
                conn, token = self._connect(deadline)
            else:
                assert conn.sock is not None
                token = _WATCHDOG.watch(conn.sock, deadline)
            conn.request("POST", self.path, body, self.headers)
            resp = conn.getresponse()
            data = self._read(resp)
            reusable = not resp.will_close
        except (OSError, http.client.HTTPException) as exc:
            fired = token is not None and _WATCHDOG.release(token)
            token = None
            stale = isinstance(exc, http.client.RemoteDisconnected | ConnectionResetError | BrokenPipeError)
            if reused and stale and not fired and time.monotonic() < deadline:
                retry = True  # the server closed an idle keep-alive connection: one fresh try
            elif fired or isinstance(exc, TimeoutError):
                raise ChainUnavailable(
                    f"RPC endpoint {self.endpoint} did not answer within {self.timeout_s:g}s"
                ) from None
            else:
                raise ChainUnavailable(f"RPC endpoint {self.endpoint} is unreachable ({type(exc).__name__})") from None
        finally:
            fired = token is not None and _WATCHDOG.release(token)
            if conn is not None:
                if reusable and not fired:
                    with self._idle_lock:
                        if len(self._idle) < _IDLE_KEPT:
                            self._idle.append(conn)
                            conn = None
                if conn is not None:
                    conn.close()
        if retry:
            return self._post(body, deadline, pooled=False)
        if fired:  # the deadline cut a body read until the connection closed: it may be partial
            raise ChainUnavailable(f"RPC endpoint {self.endpoint} did not answer within {self.timeout_s:g}s")
        if resp.status != 200:
            raise ChainUnavailable(f"RPC endpoint {self.endpoint} answered HTTP {resp.status}")
        return data

    def _connect(self, deadline: float) -> tuple[http.client.HTTPConnection, int]:
        left = max(0.001, deadline - time.monotonic())
        sock = socket.create_connection((self.host, self.port), timeout=left)
        if self.tls:
            if self._tls_context is None:
                self._tls_context = ssl.create_default_context(cafile=certifi.where())
            sock = self._tls_context.wrap_socket(sock, server_hostname=self.host, do_handshake_on_connect=False)
        token = _WATCHDOG.watch(sock, deadline)
        try:
            sock.settimeout(self.timeout_s)
            if isinstance(sock, ssl.SSLSocket):
                sock.do_handshake()
        except BaseException:
            _WATCHDOG.release(token)
            sock.close()
            raise
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        conn.sock = sock
        return conn, token

    def _read(self, resp: http.client.HTTPResponse) -> bytes:
        length = resp.getheader("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_answer_bytes:
            raise ChainError(
                f"RPC answer refused: {int(length)} bytes from {self.endpoint} (cap {self.max_answer_bytes})"
            )
        chunks: list[bytes] = []
        total = 0
        while chunk := resp.read(_READ_CHUNK):
            total += len(chunk)
            if total > self.max_answer_bytes:
                raise ChainError(f"RPC answer refused: over {self.max_answer_bytes} bytes from {self.endpoint}")
            chunks.append(chunk)
        return b"".join(chunks)


class BoundedHTTPProvider(HTTPProvider):
    """web3's HTTP provider over :class:`RpcTransport` (total deadline, byte cap, calls in flight),
    refusing an RPC answer nested deeper than keyreg's JSON bound before web3's stdlib parser
    recurses into it: py_ecc raises the recursion limit to 100,000, so a deep answer from a hostile
    RPC endpoint would overflow the C stack (issue 13, finding 13). It never logs the URL (hosted
    RPC URLs carry API keys)."""

    def __init__(
        self,
        endpoint_uri: str,
        request_kwargs: dict[str, Any] | None = None,
        exception_retry_configuration: Any = None,
        *,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        super().__init__(endpoint_uri, request_kwargs, exception_retry_configuration=None)
        timeout = float((request_kwargs or {}).get("timeout", 10.0))
        self.transport = RpcTransport(endpoint_uri, timeout, max_answer_bytes, max_in_flight)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        return self.decode_rpc_response(self.transport.post(self.encode_rpc_request(method, params)))

    def make_batch_request(self, batch_requests: Any) -> Any:
        raise ChainError("batched RPC requests are not used by keyreg")

    @staticmethod
    def decode_rpc_response(raw_response: bytes) -> RPCResponse:
        try:
            check_json_depth(raw_response)
        except MalformedEvent as exc:
            raise ChainError(f"RPC answer refused: {exc.message}") from None
        return HTTPProvider.decode_rpc_response(raw_response)


# ---------------------------------------------------------------------------------------------
# Registry logs, decoded one at a time (issue 13 review, C1 and M2)
#
# Anyone can put bytes into a registry log (a subject may name its own EOA as governor and call
# revokeByGovernance with any bytes as ``string keyId``), and a hostile RPC endpoint can put
# anything into any field. web3's ``process_log`` raised on a keyId that is not UTF-8, which
# failed the whole eth_getLogs range, for good. Here each raw log is checked and decoded on its
# own: one that fails is skipped and recorded (UndecodableLog), never failing the range; every
# integer is bounded to the range it can really have, so none reaches the store out of range.

MAX_BLOCK = 2**42  # ~440,000 years of 3 s blocks; keeps block * 1_000_000 + log index in int64
MAX_LOG_INDEX = 999_999  # ChainLog.position packs the index below 10**6
MAX_SEQ = 2**63 - 1  # the store's integer range: a seq past it can match no local event
MAX_KEY_ID_BYTES = 256  # a protocol key id is at most limits.max_key_id_chars (64 by default)
_MAX_LOG_DATA = 32 * 8 + MAX_KEY_ID_BYTES + 32
_KEY_ID = re.compile(rb"[A-Za-z0-9._:\-]*")  # keyreg.core.log's key-id alphabet ("" = whole subject)
_HEX = re.compile(r"0x[0-9a-fA-F]*")

# topic0 -> (name, indexed inputs after topic0, data types)
_REGISTRY_EVENTS: dict[bytes, tuple[str, int, list[str]]] = {
    keccak(b"HeadAnchored(bytes32,uint64,bytes32,uint8)"): ("HeadAnchored", 1, ["uint64", "bytes32", "uint8"]),
    keccak(b"HeadReplaced(bytes32,uint64,bytes32,bytes32)"): ("HeadReplaced", 1, ["uint64", "bytes32", "bytes32"]),
    keccak(b"BatchAnchored(uint256,bytes32,uint32,address)"): ("BatchAnchored", 2, ["uint32", "address"]),
    keccak(b"GovernanceRevoked(bytes32,bytes32,string,uint64,bytes32,uint256,address)"): (
        "GovernanceRevoked",
        3,
        ["bytes", "uint64", "bytes32", "address"],  # keyId read as bytes: checked below
    ),
}


class UndecodableLog(ValueError):
    """A registry log that cannot be decoded or is out of range (the cause is in the message)."""


def _quantity(raw: Any, what: str, maximum: int) -> int:
    if not isinstance(raw, str) or len(raw) > 66 or not _HEX.fullmatch(raw) or len(raw) < 3:
        raise UndecodableLog(f"{what} is not a hex quantity")
    value = int(raw, 16)
    if value > maximum:
        raise UndecodableLog(f"{what} {value} is out of range (max {maximum})")
    return value


def _hexbytes(raw: Any, what: str, size: int | None = None, limit: int = _MAX_LOG_DATA) -> bytes:
    if not isinstance(raw, str) or len(raw) > 2 + 2 * limit or not _HEX.fullmatch(raw) or len(raw) % 2:
        raise UndecodableLog(f"{what} is not hex data of at most {limit} bytes")
    out = bytes.fromhex(raw[2:])
    if size is not None and len(out) != size:
        raise UndecodableLog(f"{what} has {len(out)} bytes, not {size}")
    return out


def decode_registry_log(raw: Any, address: str, first: int, last: int) -> ChainLog | None:
    """One raw eth_getLogs entry of the registry at ``address``, fetched for blocks [first, last].

    None for a log that is not a registry event (or was removed by a reorg); raises
    :class:`UndecodableLog` for one that claims to be but does not decode or is out of range.
    """
    if not isinstance(raw, dict):
        raise UndecodableLog("a log entry is not an object")
    topics_raw = raw.get("topics")
    if not isinstance(topics_raw, list) or len(topics_raw) > 4:
        raise UndecodableLog("topics is not a list of at most 4")
    if not topics_raw or raw.get("removed") is True:
        return None
    topics = [_hexbytes(t, "topic", 32) for t in topics_raw]
    spec = _REGISTRY_EVENTS.get(topics[0])
    if spec is None:
        return None
    name, indexed, types = spec
    if not isinstance(raw.get("address"), str) or raw["address"].lower() != address.lower():
        raise UndecodableLog(f"{name} from another address")
    block = _quantity(raw.get("blockNumber"), "blockNumber", MAX_BLOCK)
    if not first <= block <= last:
        raise UndecodableLog(f"{name} in block {block}, outside the range asked for ({first}..{last})")
    log_index = _quantity(raw.get("logIndex"), "logIndex", MAX_LOG_INDEX)
    block_hash = _hexbytes(raw.get("blockHash"), "blockHash", 32)
    tx_hash = _hexbytes(raw.get("transactionHash"), "transactionHash", 32)
    if len(topics) != 1 + indexed:
        raise UndecodableLog(f"{name} has {len(topics)} topics, not {1 + indexed}")
    data = _hexbytes(raw.get("data"), "data")
    try:
        values = abi_decode(types, data)
    except Exception as exc:  # eth_abi's DecodingError family (bad offsets, padding, lengths ...)
        raise UndecodableLog(f"{name}: {type(exc).__name__}: {str(exc)[:160]}") from None
    args: dict[str, Any]
    if name in ("HeadAnchored", "HeadReplaced"):
        seq = int(values[0])
        if seq > MAX_SEQ:
            raise UndecodableLog(f"{name}: seq {seq} is out of range (max {MAX_SEQ})")
        args = {"subject": topics[1], "seq": seq}
        if name == "HeadAnchored":
            args.update(digest=bytes(values[1]), kind=int(values[2]))
        else:
            args.update(replacedDigest=bytes(values[1]), digest=bytes(values[2]))
    elif name == "BatchAnchored":
        args = {"batchId": int.from_bytes(topics[1], "big"), "root": topics[2], "count": int(values[0]),
                "submitter": str(values[1])}  # fmt: skip
    else:
        key_id = bytes(values[0])
        if keccak(key_id) != topics[2]:
            raise UndecodableLog("GovernanceRevoked: keyIdHash does not match keyId")
        if len(key_id) > MAX_KEY_ID_BYTES or not _KEY_ID.fullmatch(key_id):
            # Not a protocol key id: it can match no key, so dropping it changes no verdict.
            raise UndecodableLog(f"GovernanceRevoked: keyId 0x{key_id[:40].hex()} is not a protocol key id")
        args = {"subject": topics[1], "keyIdHash": topics[2], "keyId": key_id.decode("ascii"),
                "effectiveAt": int(values[1]), "reasonHash": bytes(values[2]),
                "proposalId": int.from_bytes(topics[3], "big"), "governor": str(values[3])}  # fmt: skip
    return ChainLog(name, args, block, block_hash, log_index, tx_hash)


def _where(raw: Any) -> dict[str, Any]:
    """Where a skipped log was, from its fields as sent (bounded; any type)."""
    if not isinstance(raw, dict):
        return {}
    out = {}
    for key in ("blockNumber", "logIndex", "transactionHash"):
        value = raw.get(key)
        out[key] = value[:80] if isinstance(value, str) else None
    return out


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
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self.endpoint = redact_url(rpc_url)
        # No provider-level retries: the services above retry with their own backoff and status.
        provider = BoundedHTTPProvider(
            rpc_url, {"timeout": timeout_s}, max_answer_bytes=max_answer_bytes, max_in_flight=max_in_flight
        )
        self.w3 = Web3(provider)
        self.address = Web3.to_checksum_address(registry_address)
        abi = key_registry().abi
        self.contract = self.w3.eth.contract(address=self.address, abi=abi)
        self._errors = _error_decoders(abi)
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

        def fetch() -> int:
            number = int(self.w3.eth.block_number)
            if not 0 <= number <= MAX_BLOCK:
                raise ChainError(f"eth_blockNumber: {self.endpoint} answered an impossible block number")
            return number

        return await self._read(fetch, "eth_blockNumber")

    async def block(self, number: int) -> BlockRef | None:
        """A block's number, hash and parent hash; None if the chain has no such block (yet)."""

        def fetch() -> BlockRef | None:
            try:
                b = self.w3.eth.get_block(number)
            except w3x.BlockNotFound:
                return None
            if int(b["number"]) != number:
                raise ChainError(f"eth_getBlockByNumber({number}): {self.endpoint} answered another block")
            return BlockRef(number, bytes(b["hash"]), bytes(b["parentHash"]), int(b["timestamp"]))

        return await self._read(fetch, f"eth_getBlockByNumber({number})")

    async def has_code(self) -> bool:
        """True if a contract is deployed at the registry address."""
        return await self._read(lambda: len(self.w3.eth.get_code(self.address)) > 0, "eth_getCode")

    async def domain_separator(self) -> bytes:
        """The registry's EIP-712 domain separator (its protocol version, chain and address)."""
        return await self._read(lambda: bytes(self.contract.functions.domainSeparator().call()), "domainSeparator")

    async def logs(self, from_block: int, to_block: int, skipped: list[dict[str, Any]] | None = None) -> list[ChainLog]:
        """Decoded registry events in [from_block, to_block], in chain order.

        Each log is decoded on its own (:func:`decode_registry_log`); one that does not decode is
        left out and described in ``skipped`` (block, index, tx, cause) instead of failing the range.
        """

        def fetch() -> list[ChainLog]:
            query = {"address": self.address, "fromBlock": hex(from_block), "toBlock": hex(to_block)}
            answer = self.w3.provider.make_request(RPCEndpoint("eth_getLogs"), [query])
            if "error" in answer:
                error = answer["error"]
                message = str(error.get("message", "")) if isinstance(error, dict) else str(error)
                raise ChainError(f"eth_getLogs: RPC error from {self.endpoint}: {message[:200]}")
            raw = answer.get("result")
            if not isinstance(raw, list):
                raise ChainError(f"eth_getLogs: the answer from {self.endpoint} is not a list of logs")
            out = []
            for entry in raw:
                try:
                    lg = decode_registry_log(entry, self.address, from_block, to_block)
                except UndecodableLog as exc:
                    if skipped is not None:
                        skipped.append({**_where(entry), "error": str(exc)[:200]})
                    continue
                if lg is not None:
                    out.append(lg)
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
