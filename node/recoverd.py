"""The signature-recovery helper process: ``python -m node.recoverd``, started by a node for itself.

A node's registry recovers the signatures of large ingest batches here, on its own core and under
its own GIL, instead of on worker threads that wait for the node's GIL after every signature (see
:mod:`node.recovery`). It reads requests from stdin and writes one response per request to
stdout, in order, and exits at end of input, so it cannot outlive the node that started it. It
holds no secrets and opens nothing: it only recovers public keys.

Framing (private to a node and its own helper, so not in docs/protocol.md): each message is a
little-endian u32 length, then the body.

* request body: per event ``n:u8`` then, if n > 0, ``digest[32]`` and n signatures of 65 bytes.
  n = 0 is an event with nothing to recover.
* response body: per event ``k:u8`` then k 20-byte signer addresses, as
  :func:`node.core.log.signers_of` returns them. k = 0 means "not recovered" (nothing to recover,
  or recovery failed): the registry then recovers in-line and reports the exact error in rule
  order, as it does for a failed chunk on a worker thread.
"""

from __future__ import annotations

import contextlib
import signal
import struct
import sys
from typing import BinaryIO

from .core.log import signers_of

_HEADER = struct.Struct("<I")
_SIG = 65
MAX_REQUEST_BYTES = 64 * 1024 * 1024  # far above any batch the registry sends; a guard, not a limit


def recover_body(body: bytes) -> bytes:
    """One response body for one request body (see the module docstring)."""
    out = bytearray()
    pos, end = 0, len(body)
    while pos < end:
        n = body[pos]
        pos += 1
        if n == 0:
            out.append(0)
            continue
        digest = body[pos : pos + 32]
        pos += 32
        sigs = [body[pos + i * _SIG : pos + (i + 1) * _SIG] for i in range(n)]
        pos += n * _SIG
        if pos > end:
            raise ValueError("truncated request")
        try:
            signers = signers_of(digest, sigs)
        except Exception:  # the registry recovers this one itself and reports the exact error
            out.append(0)
            continue
        out.append(len(signers))
        for s in signers:
            out += s
    return bytes(out)


def _read_exactly(stream: BinaryIO, n: int) -> bytes | None:
    chunks = []
    while n:
        data = stream.read(n)
        if not data:
            return None
        chunks.append(data)
        n -= len(data)
    return b"".join(chunks)


def serve(inp: BinaryIO, out: BinaryIO) -> None:
    """Answer requests until end of input."""
    while True:
        header = _read_exactly(inp, _HEADER.size)
        if header is None:
            return
        (length,) = _HEADER.unpack(header)
        if length > MAX_REQUEST_BYTES:
            raise ValueError(f"request of {length} bytes")
        body = _read_exactly(inp, length)
        if body is None:
            return
        response = recover_body(body)
        out.write(_HEADER.pack(len(response)) + response)
        out.flush()


def main() -> None:
    # A terminal's Ctrl-C reaches the whole process group: the node shuts down, and this helper
    # exits when the node closes its end of the pipe (or exits), not before.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(BrokenPipeError):  # the node went away
        serve(sys.stdin.buffer, sys.stdout.buffer)


if __name__ == "__main__":
    main()
