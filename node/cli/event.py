"""``keyreg event``: inspect signed key events offline (typed data for wallets, digests, log replay).

These commands read event files in the wire form (docs/protocol.md section 9) and need no node,
network or database. A file holds one event object or a JSON array of them; ``-`` reads stdin.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..core.errors import ConfigError, RuleViolation
from . import app
from .common import JsonOpt, handles_errors, print_json

if TYPE_CHECKING:
    from ..core.log import SubjectState
    from ..core.records import Domain, SignedEvent

event_app = typer.Typer(
    help="Inspect signed key events offline: wallet typed data, digests, log replay.", no_args_is_help=True
)
app.add_typer(event_app, name="event")

FileArg = Annotated[str, typer.Argument(help="Event file (wire JSON: one event or an array); - for stdin.")]


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from None


def _events_in(path: str) -> list[SignedEvent]:
    """Every event in a file, decoded strictly (each one size-capped as on the wire)."""
    from ..core.codec import decode_event, dumps_canonical, loads_strict

    data = _read(path)
    obj = loads_strict(data)
    if isinstance(obj, list):
        return [decode_event(dumps_canonical(item)) for item in obj]
    return [decode_event(data)]


def _one_event(path: str) -> SignedEvent:
    events = _events_in(path)
    if len(events) != 1:
        raise ConfigError(f"{path} holds {len(events)} events; this command takes exactly one")
    return events[0]


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


@event_app.command("typed-data")
@handles_errors
def typed_data_command(file: FileArg) -> None:
    """Print the eth_signTypedData_v4 JSON of the event in FILE (what a wallet signs)."""
    from ..core.eip712 import typed_data

    signed = _one_event(file)
    print_json(typed_data(signed.domain, signed.event))


@event_app.command("digest")
@handles_errors
def digest_command(file: FileArg, as_json: JsonOpt = False) -> None:
    """Print the event's EIP-712 digest, its subject and the signers its signatures recover to."""
    from ..core.eip712 import domain_separator, event_digest, hash_struct
    from ..core.log import recover_signers
    from ..core.records import subject_of

    signed = _one_event(file)
    digest = event_digest(signed.domain, signed.event)
    signers = recover_signers(signed, digest) if signed.signatures else ()
    out = {
        "kind": signed.event.kind,
        "digest": _hex(digest),
        "subject": _hex(subject_of(signed.event, digest)),
        "seq": signed.event.seq,
        "chainId": signed.domain.chain_id,
        "verifyingContract": _hex(signed.domain.verifying_contract),
        "domainSeparator": _hex(domain_separator(signed.domain)),
        "hashStruct": _hex(hash_struct(signed.event)),
        "signers": [_hex(s) for s in signers],
    }
    if as_json:
        print_json(out)
        return
    for name, value in out.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        typer.echo(f"{name:18} {shown if shown != '' else '(none)'}")


@event_app.command("validate")
@handles_errors
def validate_command(
    files: Annotated[list[str], typer.Argument(help="Event files, replayed in order as one subject's log.")],
    chain_id: Annotated[
        int | None, typer.Option("--chain-id", help="Registry chainId (default: the first event's).")
    ] = None,
    contract: Annotated[
        str | None, typer.Option("--contract", help="Registry contract 0x-address (default: the first event's).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a subject's log from its inception and print the verdict on each event.

    A rejected event leaves the state unchanged and replay goes on. Exit status: 0 if every event
    was accepted, 1 if any was rejected, 2 if the input could not be read at all.
    """
    from ..core.log import apply_event

    events = [e for f in files for e in _events_in(f)]
    if not events:
        raise ConfigError("no events given")
    domain = _domain(events[0], chain_id, contract)
    state: SubjectState | None = None
    verdicts: list[dict[str, Any]] = []
    for index, signed in enumerate(events):
        entry: dict[str, Any] = {"index": index, "kind": signed.event.kind, "seq": signed.event.seq}
        try:
            acc = apply_event(state, signed, domain)
        except RuleViolation as exc:
            entry.update(status="rejected", code=exc.code, message=exc.message)
        else:
            state = acc.state
            entry.update(status="accepted", digest=_hex(acc.digest), signers=[_hex(s) for s in acc.signers])
        verdicts.append(entry)
    rejected = sum(v["status"] == "rejected" for v in verdicts)
    summary = {
        "events": verdicts,
        "accepted": len(verdicts) - rejected,
        "rejected": rejected,
        "subject": _hex(state.subject) if state else None,
        "seq": state.seq if state else None,
        "head": _hex(state.head) if state else None,
        "revoked": state.revoked_at is not None if state else None,
    }
    if as_json:
        print_json(summary)
    else:
        for v in verdicts:
            if v["status"] == "accepted":
                typer.echo(f"#{v['index']} seq {v['seq']} {v['kind']:10} accepted  {v['digest']}")
            else:
                typer.echo(f"#{v['index']} seq {v['seq']} {v['kind']:10} rejected  [{v['code']}] {v['message']}")
        if state is not None:
            typer.echo(f"subject {summary['subject']} at seq {state.seq}, head {summary['head']}")
        typer.echo(f"{summary['accepted']} accepted, {rejected} rejected")
    if rejected:
        raise typer.Exit(1)


def _domain(first: SignedEvent, chain_id: int | None, contract: str | None) -> Domain:
    from ..core.records import Domain

    if contract is None:
        verifying = first.domain.verifying_contract
    else:
        try:
            verifying = bytes.fromhex(contract.removeprefix("0x"))
        except ValueError:
            verifying = b""
        if len(verifying) != 20:
            raise ConfigError(f"--contract must be a 20-byte 0x-address, got {contract!r}")
    return Domain(first.domain.chain_id if chain_id is None else chain_id, verifying)
