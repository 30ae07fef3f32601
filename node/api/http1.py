"""HTTP/1.x request framing for the public API: h11 parses, these functions add our stricter rules.

h11 (a maintained, sans-I/O HTTP/1.1 implementation) owns the wire format: request line, header
lines, ``Content-Length`` and chunked bodies, ``Expect: 100-continue``, keep-alive, pipelining,
and the size of an incomplete head or chunk line (``max_incomplete_event_size``). What h11
already refuses, with its own status hint, we answer as it says: malformed request or header
lines, a missing or repeated ``Host`` (HTTP/1.1), a ``Content-Length`` that is not 1-20 ASCII
digits or that conflicts with another, a transfer coding other than ``chunked`` or more than one
``Transfer-Encoding`` (501), a malformed chunk or chunk terminator (400), an incomplete head past
the limit (431).

What h11 accepts and we do not (:func:`check_head`, on the parsed :class:`h11.Request`):

- both ``Content-Length`` and ``Transfer-Encoding`` (h11 lets the coding win, RFC 9112 6.3; we
  follow RFC 9112 6.1: a smuggling shape, 400, connection closed);
- ``Transfer-Encoding`` in an HTTP/1.0 request (RFC 9112 6.1: faulty framing, 400);
- an HTTP version other than 1.0 and 1.1 (505: HTTP/2 prior knowledge is not served here);
- a target that is not origin-form (``/path?query``; 400);
- an ``Expect`` other than ``100-continue`` (417);
- control characters in a header value (h11 takes any byte but NUL, CR, LF and whitespace);
- a complete head larger than the limit (h11 bounds only incomplete ones; 431).

h11 also accepts, as RFC 9112 allows, a bare LF as a line end (2.2), obs-fold replaced by a space
(5.2) and repeated identical ``Content-Length`` values (RFC 9110 8.6): one parser decides where
each request ends, so these cannot be read two ways.

A :class:`Refusal` is answered ``{"code", "message"}`` with its status and the connection is
closed: after a framing error nothing that follows on the connection can be trusted.
"""

from __future__ import annotations

import re

import h11

__all__ = ["Head", "Refusal", "check_head", "read_body", "refusal_for"]

# Control characters other than HTAB (RFC 9110 5.5: field values are VCHAR, obs-text, SP, HTAB).
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_VERSIONS = (b"1.1", b"1.0")
_CODES = {400: "bad_request", 431: "oversized", 501: "not_implemented"}
# h11 puts the offending bytes after the reason ("illegal header line: b'...'"): not echoed.
_ECHO = re.compile(r":? (?:bytearray\()?b['\"].*", re.DOTALL)


class Refusal(Exception):
    """A request the front end answers itself (status, stable code, message), then closes."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class Head:
    """What the server needs of a request h11 parsed and :func:`check_head` accepted."""

    __slots__ = ("chunked", "headers", "http10", "length", "method", "target")

    def __init__(
        self, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], length: int, chunked: bool, http10: bool
    ) -> None:
        self.method, self.target, self.headers = method, target, headers
        self.length, self.chunked, self.http10 = length, chunked, http10

    @property
    def has_body(self) -> bool:
        return self.chunked or self.length > 0


def refusal_for(exc: h11.RemoteProtocolError, max_head: int) -> Refusal:
    """The answer to what h11 refused: its status hint, our code, its reason without the echo."""
    status = exc.error_status_hint
    if status == 431:
        return Refusal(431, "oversized", f"request head over {max_head} bytes")
    reason = _ECHO.sub("", str(exc))[:120] or "malformed request"
    return Refusal(status, _CODES.get(status, "bad_request"), reason)


def check_head(event: h11.Request, max_head: int) -> Head:
    """Our rules on top of h11's (module docstring), or :class:`Refusal`."""
    version = event.http_version
    if version not in _VERSIONS:
        raise Refusal(505, "http_version", "only HTTP/1.1 and HTTP/1.0 are served here")
    target = event.target
    if target[:1] != b"/":
        raise Refusal(400, "bad_request", "the request target must be a path (origin-form)")
    headers = list(event.headers)  # names lower-cased by h11
    size = len(event.method) + len(target) + 12
    length = -1
    chunked = False
    for name, value in headers:
        size += len(name) + len(value) + 4
        if _CTL.search(value) is not None:
            raise Refusal(400, "bad_request", "control character in a header value")
        if name == b"content-length":
            length = int(value)  # 1-20 ASCII digits, checked by h11
        elif name == b"transfer-encoding":
            chunked = True  # exactly "chunked", checked by h11
        elif name == b"expect" and value.lower() != b"100-continue":
            raise Refusal(417, "expectation_failed", "the only expectation supported is 100-continue")
    if size > max_head:
        raise Refusal(431, "oversized", f"request head over {max_head} bytes")
    http10 = version == b"1.0"
    if chunked:
        if length >= 0:
            raise Refusal(400, "bad_request", "both Content-Length and Transfer-Encoding (RFC 9112 6.1)")
        if http10:
            raise Refusal(400, "bad_request", "Transfer-Encoding in an HTTP/1.0 request")
    return Head(event.method, target, headers, max(length, 0), chunked, http10)


def read_body(conn: h11.Connection, body: bytearray, cap: int) -> bool:
    """Move the body bytes h11 has ready into ``body``: True once the request is complete, False
    when h11 needs more data. 413 as soon as the body would pass ``cap``; h11's refusals (a
    malformed chunk) propagate as :class:`h11.RemoteProtocolError`."""
    while True:
        event = conn.next_event()
        kind = type(event)
        if kind is h11.Data:
            data = event.data  # type: ignore[union-attr]
            if len(body) + len(data) > cap:
                raise Refusal(413, "oversized", f"request body exceeds the limit of {cap} bytes")
            body += data
        elif kind is h11.EndOfMessage:
            return True
        elif event is h11.NEED_DATA:
            return False
        else:  # the server never feeds h11 an EOF, so no ConnectionClosed here
            raise Refusal(400, "bad_request", "unexpected request framing")
