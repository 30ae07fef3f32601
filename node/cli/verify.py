"""``keyreg verify``, ``keyreg verify-signature`` (offline, no sockets) and ``keyreg export``.

Exit codes of ``verify`` / ``verify-signature`` (docs/bundle.md section 6)::

    0  valid                10 not-yet-valid     11 expired        12 revoked
    13 wrong-purpose        14 unknown-key       15 unknown-subject 16 disputed
    17 stale view (the chain anchors a newer head than the bundle holds)
    18 bad signature (verify-signature: the key is valid, the signature is not)
    20 bundle refused (tampered, malformed, wrong checkpoint or network)
    21 bundle older than --max-staleness
    2  usage or configuration error
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from ..core.errors import ConfigError, KeyregError
from . import app
from .common import err_console, fmt_time, out_console, parse_duration, parse_time

EXIT_CODES: dict[str, int] = {
    "valid": 0,
    "not-yet-valid": 10,
    "expired": 11,
    "revoked": 12,
    "wrong-purpose": 13,
    "unknown-key": 14,
    "unknown-subject": 15,
    "disputed": 16,
    "stale-view": 17,
    "bad-signature": 18,
    "bundle-refused": 20,
    "bundle-stale": 21,
}

BundleOpt = Annotated[Path, typer.Option("--bundle", "-b", help="Bundle file (JSON or gzip).", dir_okay=False)]
CheckpointOpt = Annotated[
    str, typer.Option("--checkpoint", help="Block hash you trust (0x...): every proof is checked against it.")
]
StalenessOpt = Annotated[
    str | None,
    typer.Option("--max-staleness", help="Refuse a checkpoint older than this (e.g. 3600, 30m, 24h, 7d)."),
]
AtOpt = Annotated[
    str | None, typer.Option("--at", help="Time to check: unix seconds, ISO 8601, now, -1h (default now).")
]
PurposeOpt = Annotated[str | None, typer.Option("--purpose", help="Purpose the key must carry (e.g. sig).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout.")]


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 0:
        return f"{-s}s in the future"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            parts.append(f"{s // size}{unit}")
            s %= size
    parts.append(f"{s}s")
    return " ".join(parts[:2]) + " old"


def _open(bundle: Path, checkpoint: str, max_staleness: str | None) -> Any:
    from ..verify import Verifier

    try:
        limit = parse_duration(max_staleness) if max_staleness is not None else None
        return Verifier.from_bundle(bundle, checkpoint, max_staleness=limit)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def _fail(exc: KeyregError, as_json: bool) -> typer.Exit:
    from ..verify import BundleRefused, BundleStale, StaleView

    if isinstance(exc, BundleStale):
        status = "bundle-stale"
    elif isinstance(exc, BundleRefused):
        status = "bundle-refused"
    elif isinstance(exc, StaleView):
        status = "stale-view"
    else:
        status = "error"
    code = EXIT_CODES.get(status, 2)
    if as_json:
        sys.stdout.write(json.dumps({"status": status, "exitCode": code, "error": exc.to_dict()}) + "\n")
    else:
        label = {"bundle-refused": "bundle refused", "bundle-stale": "bundle too old", "stale-view": "stale view"}
        err_console.print(
            f"[bold red]{label.get(status, 'error')}[/] {escape(f'[{exc.code}]')}: {escape(exc.message)}",
            highlight=False,
        )
    return typer.Exit(code)


def _view(verifier: Any) -> dict[str, Any]:
    h = verifier.checkpoint
    return {
        "checkpoint": {"number": h.number, "hash": "0x" + h.hash.hex(), "timestamp": h.timestamp},
        "ageSeconds": int(verifier.staleness),
        "chainId": verifier.domain.chain_id,
        "registry": "0x" + verifier.domain.verifying_contract.hex(),
    }


def _print_view(verifier: Any, basis: Any = None, ok: bool = False) -> None:
    h = verifier.checkpoint
    out_console.print(
        f"  view: block {h.number} (0x{h.hash.hex()[:12]}…) at {fmt_time(h.timestamp)}, {_age(verifier.staleness)}",
        highlight=False,
    )
    if basis is None:
        return
    out_console.print(f"  based on: {escape(basis.describe(verdict=False))}", highlight=False)
    if basis.decisive:
        seqs = ", ".join(map(str, basis.decisive))
        risk = (
            "it is validly signed, but an unanchored event can still lose fork choice (a recovery rotation) "
            "and later events, a revocation of this key among them, could have been hidden"
            if ok
            else "it is validly signed, but later events could have been hidden"
        )
        out_console.print(
            f"  [bold yellow]unproven[/]: this verdict rests on event seq {seqs}, newer than the registry's head: "
            f"{risk}; ask for a bundle after the subject's next direct anchor",
            highlight=False,
        )


@app.command("verify")
def verify_command(
    subject: Annotated[str, typer.Argument(help="Subject id (0x...).")],
    key_id: Annotated[str, typer.Argument(help="Key id.")],
    bundle: BundleOpt,
    checkpoint: CheckpointOpt,
    max_staleness: StalenessOpt = None,
    at: AtOpt = None,
    purpose: PurposeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Offline: is KEY_ID of SUBJECT valid (at --at, for --purpose)? Opens no network connection."""
    try:
        verifier = _open(bundle, checkpoint, max_staleness)
        verdict = verifier.check(subject, key_id, at=parse_time(at), purpose=purpose)
        basis = verifier.basis(subject, key_id)
    except KeyregError as exc:
        raise _fail(exc, as_json) from None
    except ValueError as exc:
        raise _fail(ConfigError(str(exc)), as_json) from None
    code = EXIT_CODES[verdict.status]
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "status": verdict.status,
                    "exitCode": code,
                    "verdict": verdict.to_dict(),
                    "view": _view(verifier),
                    "basedOn": basis.to_dict() if basis is not None else None,
                }
            )
            + "\n"
        )
    else:
        color = "green" if verdict.ok else "red"
        out_console.print(f"[bold {color}]{verdict.status}[/]: {escape(verdict.reason)}", highlight=False)
        out_console.print(
            f"  subject {escape(subject)}  key {escape(key_id)}  at {fmt_time(verdict.at)}"
            + (f"  purpose {escape(purpose)}" if purpose else ""),
            highlight=False,
        )
        _print_view(verifier, basis, verdict.ok)
    raise typer.Exit(code)


def _read_signature(text: str) -> bytes:
    t = text.strip()
    try:
        if t.startswith("0x"):
            return bytes.fromhex(t[2:])
        return base64.urlsafe_b64decode(t + "=" * (-len(t) % 4))
    except (ValueError, binascii.Error):
        raise ConfigError("--signature must be 0x-hex or base64url") from None


@app.command("verify-signature")
def verify_signature_command(
    subject: Annotated[str, typer.Argument(help="Subject id (0x...).")],
    key_id: Annotated[str, typer.Argument(help="Key id.")],
    bundle: BundleOpt,
    checkpoint: CheckpointOpt,
    signature: Annotated[str, typer.Option("--signature", help="Signature, 0x-hex or base64url.")],
    message: Annotated[str | None, typer.Option("--message", help="The signed message (UTF-8 text).")] = None,
    message_file: Annotated[
        Path | None, typer.Option("--message-file", help="File holding the signed message bytes ('-' = stdin).")
    ] = None,
    max_staleness: StalenessOpt = None,
    at: AtOpt = None,
    purpose: PurposeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Offline: did KEY_ID of SUBJECT (valid at --at) make --signature over the message?"""
    try:
        if (message is None) == (message_file is None):
            raise ConfigError("give exactly one of --message and --message-file")
        if message is not None:
            data = message.encode()
        elif str(message_file) == "-":
            data = sys.stdin.buffer.read()
        else:
            assert message_file is not None
            data = message_file.read_bytes()
        sig = _read_signature(signature)
        verifier = _open(bundle, checkpoint, max_staleness)
        result = verifier.verify_signature(subject, key_id, data, sig, at=parse_time(at), purpose=purpose)
        basis = verifier.basis(subject, key_id)
    except KeyregError as exc:
        raise _fail(exc, as_json) from None
    except (ValueError, OSError) as exc:
        raise _fail(ConfigError(str(exc)), as_json) from None
    status = "valid" if result.valid else ("bad-signature" if result.verdict.ok else result.verdict.status)
    code = EXIT_CODES[status]
    if as_json:
        sys.stdout.write(
            json.dumps(
                {
                    "status": status,
                    "exitCode": code,
                    **result.to_dict(),
                    "view": _view(verifier),
                    "basedOn": basis.to_dict() if basis is not None else None,
                }
            )
            + "\n"
        )
    else:
        color = "green" if result.valid else "red"
        out_console.print(f"[bold {color}]{status}[/]: {escape(result.reason)}", highlight=False)
        _print_view(verifier, basis, result.valid)
    raise typer.Exit(code)


@app.command("export")
def export_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle file to write.", dir_okay=False)],
    rpc: Annotated[str, typer.Option("--rpc", help="Ethereum JSON-RPC URL (eth_getProof is required).")],
    data_dir: Annotated[
        Path, typer.Option("--data-dir", "-d", envvar="KEYREG_DATA_DIR", help="Node data directory.")
    ] = Path(".keyreg"),
    block: Annotated[str, typer.Option("--block", help="Checkpoint block: a number or 'latest'.")] = "latest",
    subjects: Annotated[
        list[str] | None, typer.Option("--subject", "-s", help="Subject to include (repeatable).")
    ] = None,
    all_subjects: Annotated[bool, typer.Option("--all", help="Include every subject the node holds.")] = False,
    gzip_out: Annotated[bool, typer.Option("--gzip/--no-gzip", help="Compress the bundle.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Write a proof-carrying bundle of subjects for offline verification (keyreg verify)."""
    from ..export import export_from_data_dir

    try:
        if bool(subjects) == all_subjects:
            raise ConfigError("give --subject (one or more) or --all")
        if block != "latest" and not block.isdigit():
            raise ConfigError("--block must be a number or 'latest'")
        summary = export_from_data_dir(
            data_dir,
            rpc,
            out,
            block=int(block) if block.isdigit() else "latest",
            subjects=None if all_subjects else subjects,
            compress=gzip_out,
            progress=not as_json,
        )
    except KeyregError as exc:
        if as_json:
            sys.stdout.write(json.dumps({"error": exc.to_dict()}) + "\n")
        else:
            err_console.print(f"[bold red]error[/] {escape(f'[{exc.code}]')}: {escape(exc.message)}", highlight=False)
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        out_console.print(
            f"wrote {summary['path']}: {summary['subjects']} subjects, {summary['events']} events, "
            f"{summary['bytes']:,} bytes; checkpoint block {summary['block']} {summary['blockHash']}",
            highlight=False,
        )
        out_console.print(
            f"verify with: keyreg verify --bundle {summary['path']} --checkpoint {summary['blockHash']} SUBJECT KEYID",
            highlight=False,
        )
