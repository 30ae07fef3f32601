"""HTTP/1.x request framing, sans I/O: request heads and chunked bodies (RFC 9112).

The public API's front end (:mod:`node.api.server`) reads bytes and calls these; they take bytes
and return requests or raise :class:`Refusal`. Everything here is linear in its input and holds
to a few rules that close the usual framing attacks:

- exactly one way to frame a body: ``Content-Length`` (plain ASCII digits, one header) or
  ``Transfer-Encoding: chunked`` (one header, that coding only); both together is refused and the
  connection closed (RFC 9112 6.1: the message is a smuggling attempt whatever else it is);
- no obs-fold, no whitespace before a header's colon, no bare CR or LF, no control characters;
- one ``Host`` for HTTP/1.1; ``Transfer-Encoding`` in an HTTP/1.0 request is faulty framing;
- chunk sizes are 1-16 hex digits, chunk and trailer lines are bounded, and the decoded body is
  bounded by the caller's cap as it arrives, not after.

A :class:`Refusal` is answered ``{"code", "message"}`` with its status, and the connection is
closed: after a framing error nothing that follows on the connection can be trusted.
"""

from __future__ import annotations

import re

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") (/[\x21-\x7e]*) HTTP/1\.([01])")
_HEADER_LINE = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:[\x21-\x7e\x80-\xff][\x20-\x7e\x80-\xff\t]*)?)")
_CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[\x20-\x7e\x80-\xff\t]*)?")
_TRAILER_LINE = re.compile(rb"[\x20-\x7e\x80-\xff\t]*")
PRI = b"PRI * HTTP/2.0"  # HTTP/2 prior knowledge: the front end hands such a connection on


class Refusal(Exception):
    """A request the front end answers itself (status, stable code, message), then closes."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Request:
    """A parsed request head: method, origin-form target, headers (names lower-cased), framing."""

    __slots__ = ("chunked", "close", "expect_continue", "headers", "http10", "length", "method", "target")

    def __init__(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        close: bool,
        length: int,
        chunked: bool,
        expect_continue: bool,
        http10: bool,
    ) -> None:
        self.method, self.target, self.headers, self.close = method, target, headers, close
        self.length, self.chunked, self.expect_continue, self.http10 = length, chunked, expect_continue, http10

    @property
    def has_body(self) -> bool:
        return self.chunked or self.length > 0


def parse_head(head: bytes) -> Request | None:
    """The request in ``head`` (without its final CRLFCRLF); None for HTTP/2 prior knowledge.

    Raises :class:`Refusal` for anything malformed or ambiguous.
    """
    lines = head.split(b"\r\n")
    m = _REQUEST_LINE.fullmatch(lines[0])
    if m is None:
        if head == PRI:
            return None
        raise Refusal(400, "bad_request", "malformed request line: want METHOD /path HTTP/1.1")
    method, target, minor = m.groups()
    http10 = minor == b"0"
    headers: list[tuple[bytes, bytes]] = []
    close = http10  # HTTP/1.0 connections are not kept alive here
    hosts = 0
    length: int | None = None
    coding: bytes | None = None
    expect = False
    for line in lines[1:]:
        h = _HEADER_LINE.fullmatch(line)
        if h is None:
            raise Refusal(400, "bad_request", "malformed header line")
        name = h.group(1).lower()
        value = h.group(2).rstrip(b" \t")
        if name == b"host":
            hosts += 1
        elif name == b"content-length":
            if length is not None:
                raise Refusal(400, "bad_request", "more than one Content-Length header")
            if _CONTENT_LENGTH.fullmatch(value) is None:
                raise Refusal(400, "bad_request", "Content-Length must be 1-18 ASCII digits")
            length = int(value)
        elif name == b"transfer-encoding":
            if coding is not None:
                raise Refusal(400, "bad_request", "more than one Transfer-Encoding header")
            coding = value.lower()
        elif name == b"connection":
            if b"close" in [t.strip() for t in value.lower().split(b",")]:
                close = True
        elif name == b"expect":
            if value.lower() != b"100-continue":
                raise Refusal(417, "expectation_failed", "the only expectation supported is 100-continue")
            expect = True
        headers.append((name, value))
    if coding is not None:
        if length is not None:
            raise Refusal(400, "bad_request", "both Content-Length and Transfer-Encoding (RFC 9112 6.1)")
        if http10:
            raise Refusal(400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request")
        if coding != b"chunked":
            raise Refusal(501, "not_implemented", "the only transfer coding supported is chunked")
    if hosts > 1 or (hosts == 0 and not http10):
        raise Refusal(400, "bad_request", "an HTTP/1.1 request has exactly one Host header")
    return Request(method, target, headers, close, length or 0, coding is not None, expect, http10)


_SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


class ChunkedDecoder:
    """Incremental decoder of a chunked body: feed it bytes as they arrive.

    ``cap`` bounds the decoded body (413 as soon as a chunk size would pass it), ``max_line``
    bounds each chunk-size line and the trailer section (431). Trailers are read and dropped.
    """

    __slots__ = ("_left", "_scanned", "_state", "_trailer", "cap", "max_line", "parts", "size")

    def __init__(self, cap: int, max_line: int) -> None:
        self.cap, self.max_line = cap, max_line
        self.parts: list[bytes] = []
        self.size = 0  # decoded bytes so far
        self._state = _SIZE
        self._left = 0  # bytes left in the current chunk's data
        self._trailer = 0  # trailer bytes so far
        # Bytes at the start of the next feed already searched for CRLF (the incomplete line the
        # caller hands back): a line trickling in byte by byte is scanned once, not once per byte.
        self._scanned = 0

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def body(self) -> bytes:
        return b"".join(self.parts)

    def feed(self, data: bytes) -> int:
        """Consume what it can of ``data``; returns how many bytes it took (the rest is the
        incomplete tail of a line, or what follows the body once ``done``). The next call must
        pass that tail first, then the bytes that arrived since."""
        pos, end = 0, len(data)
        while pos < end and self._state != _DONE:
            state = self._state
            if state == _DATA:
                take = min(self._left, end - pos)
                self.parts.append(data[pos : pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._state = _DATA_END
            elif state == _DATA_END:
                if end - pos < 2:
                    break
                if data[pos : pos + 2] != b"\r\n":
                    raise Refusal(400, "bad_request", "chunk data not followed by CRLF")
                pos += 2
                self._state = _SIZE
            else:
                nl = data.find(b"\r\n", pos + self._scanned, pos + self.max_line + 2)
                if nl < 0:
                    if end - pos > self.max_line:
                        raise Refusal(431, "oversized", "chunk-size or trailer line too long")
                    self._scanned = max(0, end - pos - 1)  # a CR at the end may start the CRLF
                    break
                self._scanned = 0
                line = data[pos:nl]
                pos = nl + 2
                if state == _SIZE:
                    self._chunk_size(line)
                elif not line:
                    self._state = _DONE
                else:
                    self._trailer += len(line) + 2
                    if self._trailer > self.max_line:
                        raise Refusal(431, "oversized", "trailer section too long")
                    if _TRAILER_LINE.fullmatch(line) is None:
                        raise Refusal(400, "bad_request", "malformed trailer line")
        return pos

    def _chunk_size(self, line: bytes) -> None:
        m = _CHUNK_SIZE.fullmatch(line)
        if m is None:
            raise Refusal(400, "bad_request", "malformed chunk size")
        n = int(m.group(1), 16)
        if self.size + n > self.cap:
            raise Refusal(413, "oversized", f"request body exceeds the limit of {self.cap} bytes")
        self.size += n
        if n:
            self._left, self._state = n, _DATA
        else:
            self._state = _TRAILER
