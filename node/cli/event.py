"""``keyreg event``: inspect signed key events offline (typed data for wallets, digests, log replay).

These commands read event files in the wire form (docs/protocol.md section 9) and need no node,
network or database. A file holds one event object or a JSON array of them; ``-`` reads stdin.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..core.errors import ConfigError, KeyregError, RuleViolation
from . import app
from .common import (
    DEFAULT_DATA_DIR,
    DataDirOpt,
    JsonOpt,
    NodeOpt,
    PasswordFileOpt,
    handles_errors,
    parse_time,
    print_json,
    subject_arg,
)

if TYPE_CHECKING:
    from ..core.log import SubjectState
    from ..core.records import Domain, SignedEvent

event_app = typer.Typer(
    help="Inspect signed key events offline (wallet typed data, digests, log replay) and run signing ceremonies "
    "(propose, sign, attach, submit).",
    no_args_is_help=True,
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
    return _events_from(_read(path))


def _events_from(data: bytes) -> list[SignedEvent]:
    from ..core.codec import decode_event, dumps_canonical, loads_strict

    obj = loads_strict(data)
    if isinstance(obj, list):
        return [decode_event(dumps_canonical(item)) for item in obj]
    return [decode_event(data)]


def _one_event(path: str) -> SignedEvent:
    """The one event in an event file, or a proposal's event with the signatures collected so far."""
    from ..core.codec import loads_strict

    data = _read(path)
    obj = loads_strict(data)
    if _is_proposal(obj):
        from ..ceremony.proposal import Proposal
        from ..core.records import SignedEvent

        p = Proposal.from_obj(obj)
        return SignedEvent(p.event, tuple(sig for _, sig in p.signatures), p.domain)
    events = _events_from(data)
    if len(events) != 1:
        raise ConfigError(f"{path} holds {len(events)} events; this command takes exactly one")
    return events[0]


def _hex(b: bytes) -> str:
    return "0x" + b.hex()


@event_app.command("typed-data")
@handles_errors
def typed_data_command(file: FileArg) -> None:
    """Print the eth_signTypedData_v4 JSON of the event (or proposal) in FILE: what a wallet signs.

    For a proposal: `keyreg event typed-data p.json > typed.json`, then e.g.
    `cast wallet sign --data --from-file typed.json` (a keystore, a Ledger or a Trezor) and
    `keyreg event attach p.json --signature 0x..`.
    """
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


# ---------------------------------------------------------------------------------------------
# Signing ceremonies (docs/ceremonies.md): propose, sign, attach, submit. A proposal file holds the
# unsigned event for the subject's head, the signer set it collects for and the signatures so far
# (node/ceremony/proposal.py); every command re-checks every signature it reads.

ProposalArg = Annotated[Path, typer.Argument(help="Proposal file (written by `keyreg event propose`).")]
KINDS = ("update", "rotation", "revocation", "delegation")


def _is_proposal(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("type") == "keyreg-proposal"


def _load_proposal(path: Path) -> Any:
    from ..ceremony.proposal import Proposal
    from ..core.codec import loads_strict

    return Proposal.from_obj(loads_strict(_read(str(path))))


def _write_proposal(path: Path, proposal: Any) -> None:
    """Rewrite the file atomically (a crash leaves the old or the new file, never half of one)."""
    import json
    import os
    import tempfile

    text = json.dumps(proposal.to_obj(), indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # nothing secret: an unsigned event and public signatures
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _summary(proposal: Any, path: Path | None = None) -> dict[str, Any]:
    a = proposal.authority
    return {
        "file": str(path) if path else None,
        "id": _hex(proposal.digest),
        "subject": _hex(proposal.subject),
        "kind": proposal.event.kind,
        "seq": proposal.event.seq,
        "authority": a.name,
        "threshold": a.threshold,
        "signers": [_hex(s) for s in a.signers],
        "signed": [_hex(s) for s in proposal.signers],
        "missing": proposal.missing,
        "complete": proposal.complete,
    }


def _print_summary(s: dict[str, Any]) -> None:
    from .common import err_console

    err_console.print(f"proposal {s['id']} ({s['kind']} at seq {s['seq']} of {s['subject']})")
    err_console.print(f"  {s['threshold']} of {len(s['signers'])} {s['authority']}: {', '.join(s['signers'])}")
    signed = ", ".join(s["signed"]) or "nobody yet"
    if s["complete"]:
        err_console.print(f"  [green]complete[/]: signed by {signed}; submit it with `keyreg event submit`")
    else:
        err_console.print(f"  signed by {signed}; {s['missing']} more signature(s) needed")


def _replay(events: list[SignedEvent]) -> tuple[Any, Domain]:
    """The subject state at the end of a log, replayed and checked here (nothing taken on trust)."""
    from ..core.log import apply_event

    if not events:
        raise ConfigError("the log is empty")
    domain = events[0].domain
    state = None
    for signed in events:
        state = apply_event(state, signed, domain).state
    return state, domain


def _log_from_node(client: Any, subject: bytes) -> list[SignedEvent]:
    from ..core.codec import decode_event, dumps_canonical

    events: list[SignedEvent] = []
    start: int | None = 0
    while start is not None:
        page = client.get(f"/v1/subjects/0x{subject.hex()}/events", **{"from": start, "limit": 1000})
        events.extend(decode_event(dumps_canonical(e)) for e in page["events"])
        start = page.get("next")
    return events


def _head_state(subject: bytes, from_log: list[str] | None, store: bool, data_dir: Path, node: str | None) -> Any:
    """(state, domain) of the subject: from event files, the data dir's store, or the node's API."""
    from .common import NodeClient, load

    if from_log:
        events = [e for f in from_log for e in _events_in(f)]
    elif store:
        from ..store.sql import SqlStore

        cfg = load(data_dir)
        db = SqlStore(cfg.store_url, limits=cfg.limits)
        try:
            events = db.log(subject)
        finally:
            db.engine.dispose()
    else:
        events = _log_from_node(NodeClient.for_config(load(data_dir), node), subject)
    if not events:
        raise ConfigError(f"no events of subject 0x{subject.hex()} found")
    state, domain = _replay(events)
    if state.subject != subject:
        raise ConfigError(f"the log is subject 0x{state.subject.hex()}'s, not 0x{subject.hex()}'s")
    return state, domain


def _address(text: str, what: str) -> bytes:
    raw = text.removeprefix("0x").lower()
    try:
        a = bytes.fromhex(raw)
    except ValueError:
        a = b""
    if len(a) != 20:
        raise ConfigError(f"{what} must be a 20-byte 0x address, got {text!r}")
    return a


def _addresses(values: list[str] | None, what: str) -> tuple[bytes, ...]:
    out = sorted({_address(v, what) for v in values or []})
    if len(out) != len(values or []):
        raise ConfigError(f"{what}: an address is given twice")
    return tuple(out)


def _operator_set(
    operators: list[str] | None,
    threshold: int | None,
    purposes: list[str] | None,
    max_validity: str | None,
    max_keys: int | None,
) -> Any:
    from ..core import builder
    from .common import parse_duration

    ops = _addresses(operators, "--operator")
    if not ops:
        return builder.operator_set([], 0, [], 0, 0)
    if threshold is None or not purposes or max_validity is None or max_keys is None:
        raise ConfigError(
            "an operator set needs --operator-threshold, --operator-purpose, --max-validity and --max-keys"
        )
    return builder.operator_set(ops, threshold, purposes, parse_duration(max_validity), max_keys)


@event_app.command("propose")
@handles_errors
def propose_command(
    kind: Annotated[str, typer.Argument(help=f"Event kind: {', '.join(KINDS)}.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the proposal here.")],
    subject: Annotated[str | None, typer.Option(help="Subject id (default: the data dir keystore's subject).")] = None,
    from_log: Annotated[
        list[str] | None, typer.Option("--from-log", help="Take the head from these event files (the subject's log).")
    ] = None,
    store: Annotated[bool, typer.Option("--store", help="Take the head from the data dir's database.")] = False,
    timestamp: Annotated[str | None, typer.Option(help="Event time (default: now).")] = None,
    authority: Annotated[
        str | None, typer.Option(help="update only: sign by the 'controllers' (default) or the 'operators'.")
    ] = None,
    # update
    key_id: Annotated[
        str | None, typer.Option(help="update: id of the key to publish; revocation: key to revoke.")
    ] = None,
    alg: Annotated[str, typer.Option(help="update: algorithm of the published key.")] = "Ed25519",
    public_key: Annotated[str | None, typer.Option(help="update: the published key's public key, 0x hex.")] = None,
    purpose: Annotated[
        list[str] | None, typer.Option(help="update: purpose of the published key (repeatable).")
    ] = None,
    not_before: Annotated[str | None, typer.Option(help="update: the published key's not-before (default: 0).")] = None,
    not_after: Annotated[
        str | None, typer.Option(help="update: the published key's not-after (default: none).")
    ] = None,
    retire: Annotated[
        list[str] | None, typer.Option(help="update: KEYID@TIME retires a key at TIME (repeatable).")
    ] = None,
    metadata: Annotated[str | None, typer.Option(help="update: set the subject's metadata.")] = None,
    # rotation
    controller: Annotated[list[str] | None, typer.Option(help="rotation: revealed controller (repeatable).")] = None,
    threshold: Annotated[int | None, typer.Option(help="rotation: the revealed set's threshold.")] = None,
    next_controller: Annotated[
        list[str] | None, typer.Option(help="rotation: controller of the next set to commit to (repeatable).")
    ] = None,
    next_threshold: Annotated[int | None, typer.Option(help="rotation: the next set's threshold.")] = None,
    next_commitment: Annotated[str | None, typer.Option(help="rotation: commit to this 0x hash instead.")] = None,
    final: Annotated[bool, typer.Option(help="rotation: commit to no next set (no rotation ever after).")] = False,
    governor: Annotated[
        str | None, typer.Option(help="rotation (v2): the governor from now on, or 'none' (default: unchanged).")
    ] = None,
    # revocation
    whole_subject: Annotated[bool, typer.Option(help="revocation: revoke the whole subject, for good.")] = False,
    effective_at: Annotated[str | None, typer.Option(help="revocation: effective time (default: now).")] = None,
    reason: Annotated[str, typer.Option(help="revocation: reason, stored in the log.")] = "",
    # delegation (and rotation, v2)
    operator: Annotated[
        list[str] | None, typer.Option(help="delegation: operator address (repeatable; none drops the set).")
    ] = None,
    operator_threshold: Annotated[int | None, typer.Option(help="delegation: operator threshold.")] = None,
    operator_purpose: Annotated[
        list[str] | None, typer.Option(help="delegation: purpose operators may publish (repeatable).")
    ] = None,
    max_validity: Annotated[
        str | None, typer.Option(help="delegation: longest validity of an operator key (e.g. 30d).")
    ] = None,
    max_keys: Annotated[int | None, typer.Option(help="delegation: most live in-scope keys.")] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Build an unsigned proposal for the subject's current head and write it to --out.

    The head comes from the node (--node, default from the data dir's config; its log is fetched and
    replayed here, so nothing is taken on trust), the data dir's database (--store) or event files
    (--from-log). The event is checked against every rule before anyone signs. Then each signer runs
    `keyreg event sign FILE --key-file K`, or signs `keyreg event typed-data FILE` with a wallet
    (`cast wallet sign --data --from-file`) and `keyreg event attach FILE --signature 0x..`.
    """
    import time

    from ..ceremony.proposal import propose
    from ..core import builder
    from ..core.records import ZERO20, ZERO32, PublishedKey, Rotation

    if kind not in KINDS:
        raise ConfigError(f"KIND must be one of {', '.join(KINDS)}, got {kind!r}")
    sid = subject_arg(subject, lambda: _keystore_subject(data_dir))
    state, domain = _head_state(sid, from_log, store, data_dir, node)
    now = int(time.time())
    ts = parse_time(timestamp, now) if timestamp else max(now, state.timestamp)
    assert ts is not None
    seq, prev = state.seq + 1, state.head
    event: Any
    if kind == "update":
        publish = []
        if key_id is not None or public_key is not None:
            if key_id is None or public_key is None or not purpose:
                raise ConfigError("publishing a key needs --key-id, --public-key and --purpose")
            try:
                pk = bytes.fromhex(public_key.removeprefix("0x"))
            except ValueError:
                raise ConfigError("--public-key must be hex") from None
            publish.append(
                PublishedKey(
                    key_id, alg, pk, tuple(purpose), parse_time(not_before, now) or 0, parse_time(not_after, now) or 0
                )
            )
        retirements = []
        for item in retire or []:
            kid, sep, when = item.partition("@")
            if not sep or not kid:
                raise ConfigError(f"--retire takes KEYID@TIME, got {item!r}")
            retirements.append((kid, parse_time(when, now) or 0))
        event = builder.update(sid, seq, prev, ts, publish, retirements, metadata)
    elif kind == "rotation":
        revealed = _addresses(controller, "--controller")
        if not revealed or threshold is None:
            raise ConfigError("a rotation reveals the pre-committed set: --controller (each) and --threshold")
        nxt = _addresses(next_controller, "--next-controller")
        if sum(map(bool, (nxt, next_commitment, final))) != 1:
            raise ConfigError(
                "say what the rotation commits to: --next-controller (each), --next-commitment, or --final"
            )
        commitment = ZERO32
        if nxt:
            from ..core.eip712 import controller_commitment

            commitment = controller_commitment(nxt, next_threshold or threshold)
        elif next_commitment:
            try:
                commitment = bytes.fromhex(next_commitment.removeprefix("0x"))
            except ValueError:
                commitment = b""
            if len(commitment) != 32:
                raise ConfigError("--next-commitment must be 32 bytes of 0x hex")
        # A rotation restates the governor and the operator set (protocol 2): unchanged unless given.
        gov = state.governor
        if governor is not None:
            gov = ZERO20 if governor.lower() == "none" else _address(governor, "--governor")
        ops = state.operators
        if operator:
            ops = _operator_set(operator, operator_threshold, operator_purpose, max_validity, max_keys)
        event = Rotation(sid, seq, prev, ts, revealed, threshold, commitment, gov, ops)
    elif kind == "revocation":
        if whole_subject == (key_id is not None):
            raise ConfigError("a revocation names one key (--key-id) or the whole subject (--whole-subject)")
        eff = parse_time(effective_at, now) if effective_at else now
        assert eff is not None
        event = builder.revocation(sid, seq, prev, ts, key_id or "", eff, reason)
    else:
        ops = _operator_set(operator, operator_threshold, operator_purpose, max_validity, max_keys)
        event = builder.delegation(sid, seq, prev, ts, ops)
    proposal = propose(state, event, domain, authority, now=now)
    _write_proposal(out, proposal)
    summary = _summary(proposal, out)
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)
    typer.echo(_hex(proposal.digest))


def _keystore_subject(data_dir: Path) -> bytes:
    from ..keys.keystore import Keystore

    try:
        ks = Keystore.open(data_dir / "keystore")
    except KeyregError:
        ks = None
    if ks is None or ks.subject is None:
        raise ConfigError("no subject given: pass --subject 0x.. (the data dir's keystore has none)")
    return ks.subject


@event_app.command("sign")
@handles_errors
def sign_command(
    file: ProposalArg,
    key_file: Annotated[Path, typer.Option("--key-file", help="Ethereum V3 keyfile of one signer.", dir_okay=False)],
    password_file: PasswordFileOpt = None,
    print_only: Annotated[
        bool, typer.Option("--print-only", help="Print the signature; leave the proposal file unchanged.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Sign the proposal in FILE with a V3 keyfile and attach the signature to FILE.

    The password comes from --password-file, KEYREG_PASSWORD_FILE, KEYREG_PASSWORD, or a prompt (never
    echoed, never logged). A key that is not one of the proposal's signers is refused before it signs.
    """
    from ..core.hashing import address_of_private_key, sign_digest
    from ..keys.keystore import read_keyfile, resolve_password

    proposal = _load_proposal(file)
    proposal.require_open()
    password = resolve_password(password_file)
    secret = read_keyfile(key_file, password)
    signer = address_of_private_key(secret)
    if signer not in proposal.authority.signers:
        from ..core.errors import UnauthorizedSigner

        raise UnauthorizedSigner(
            f"{key_file.name} holds 0x{signer.hex()}, not one of the {proposal.authority.name} this proposal "
            f"collects for ({', '.join(_hex(s) for s in proposal.authority.signers)})"
        )
    signature = sign_digest(secret, proposal.digest)
    del secret
    proposal = proposal.attach(signature)  # the same checks as any signature
    if not print_only:
        _write_proposal(file, proposal)
    summary = {**_summary(proposal, file), "signer": _hex(signer), "signature": _hex(signature)}
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)
    typer.echo(_hex(signature))


@event_app.command("attach")
@handles_errors
def attach_command(
    file: ProposalArg,
    signature: Annotated[
        list[str], typer.Option("--signature", "-s", help="0x signature (65 bytes) over the proposal (repeatable).")
    ],
    as_json: JsonOpt = False,
) -> None:
    """Attach signatures made elsewhere (a wallet, `cast wallet sign --data`) to the proposal in FILE.

    Each must be a low-s signature of the proposal's EIP-712 digest by one of its signers, not one
    already attached; if any fails, FILE is left unchanged.
    """
    from ..ceremony.proposal import parse_signature

    proposal = _load_proposal(file)
    for text in signature:
        proposal = proposal.attach(parse_signature(text))
    _write_proposal(file, proposal)
    summary = _summary(proposal, file)
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


@event_app.command("submit")
@handles_errors
def submit_command(
    file: ProposalArg,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the signed event here instead of posting it.")
    ] = None,
    compete: Annotated[
        bool,
        typer.Option(
            "--compete",
            help="Send it even if the head moved on: a competitor for its seq, which fork choice settles "
            "(controllers over operators, protocol 10.3 rule 4). For taking a seq back from a rogue operator.",
        ),
    ] = False,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Submit the signed event of a complete proposal to the node (refused until the threshold is met).

    The node's head is checked first: a proposal for a head that moved on is stale and never sent,
    unless --compete says it is meant as a competitor for its seq (recovery from a rogue operator).
    """
    import json

    from ..ceremony.proposal import StaleProposal
    from ..core.codec import event_to_obj
    from .common import NodeClient, RemoteError, load

    proposal = _load_proposal(file)
    signed = proposal.signed_event()
    obj = event_to_obj(signed)
    summary = {**_summary(proposal, file), "submitted": out is None}
    if out is not None:
        out.write_text(json.dumps(obj, indent=2) + "\n")
    else:
        client = NodeClient.for_config(load(data_dir), node)
        event = proposal.event
        try:
            head = client.get(f"/v1/subjects/{_hex(proposal.subject)}")
        except RemoteError as exc:
            if exc.code != "unknown_subject":
                raise
            head = None
        if event.kind == "inception":
            if head is not None:
                raise StaleProposal(f"subject {_hex(proposal.subject)} already exists on the node")
        elif head is None:
            raise ConfigError(f"the node does not know subject {_hex(proposal.subject)}")
        elif compete and event.seq <= head["seq"]:
            pass  # a competitor at an occupied seq: the node checks its prev and signers, fork choice decides
        elif (head["seq"], head["head"]) != (event.seq - 1, _hex(event.prev)):
            raise StaleProposal(
                f"the proposal extends seq {event.seq - 1} but the node's head is seq {head['seq']} ({head['head']}): "
                "build a new proposal from the current head (or, to take the seq back from an operator, --compete)"
            )
        summary["result"] = client.post_events([obj])[0]
    if as_json:
        print_json(summary)
        return
    from .common import err_console

    if out is not None:
        err_console.print(f"[green]signed event written[/] to {out}")
    else:
        err_console.print(f"[green]{summary['result']['status']}[/] {event.kind} at seq {event.seq} by {client.url}")
    typer.echo(_hex(proposal.digest))


@event_app.command("share")
@handles_errors
def share_command(
    file: ProposalArg,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Hand the proposal in FILE and its signatures to a node (POST /v1/proposals), where signers on
    other machines find it (`keyreg event fetch`). At the threshold the node submits the event itself.

    FILE is rewritten with what the node holds (its signatures and yours).
    """
    from ..ceremony.proposal import Proposal
    from ..core.codec import event_to_obj
    from ..core.records import SignedEvent
    from .common import NodeClient, RemoteError, load

    proposal = _load_proposal(file)
    body: dict[str, Any] = {
        "event": event_to_obj(SignedEvent(proposal.event, (), proposal.domain)),
        "authority": proposal.authority.name,
        "signatures": [_hex(sig) for _, sig in proposal.signatures],
    }
    client = NodeClient.for_config(load(data_dir), node)
    pid = _hex(proposal.digest)
    try:
        answer = client.get(f"/v1/proposals/{pid}")
    except RemoteError as exc:
        if exc.code != "not_found":
            raise
        answer = client.request("POST", "/v1/proposals", json_body=body)  # the node's first copy
    else:  # the node holds it: only the signatures it lacks, each checked there as it comes
        for sig in body["signatures"]:
            if sig not in answer["signatures"] and not answer["complete"]:
                answer = client.request("POST", f"/v1/proposals/{pid}/signatures", json_body={"signature": sig})
    held = Proposal.from_obj({k: v for k, v in answer.items() if k not in _NODE_FIELDS})
    _write_proposal(file, held)
    summary = {**_summary(held, file), "node": client.url, "expiresAt": answer.get("expiresAt")}
    summary["submitted"] = answer.get("submitted")
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)
    if summary["submitted"] is not None:
        from .common import err_console

        err_console.print(f"  the node submitted it: {summary['submitted'].get('status')}")


# What a node adds to a proposal's JSON form in its answers (node/api/proposal_routes.py).
_NODE_FIELDS = frozenset(("createdAt", "expiresAt", "stale", "submitted"))


@event_app.command("fetch")
@handles_errors
def fetch_command(
    proposal_id: Annotated[str, typer.Argument(help="Proposal id (the event's digest, 0x + 64 hex).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Write the proposal here.")],
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fetch a proposal a node holds (GET /v1/proposals/{id}) into a file, every signature re-checked here."""
    from ..ceremony.proposal import Proposal
    from .common import NodeClient, load

    pid = _hex(subject_arg(proposal_id, bytes))  # same shape as a subject id: 0x + 64 hex
    client = NodeClient.for_config(load(data_dir), node)
    answer = client.get(f"/v1/proposals/{pid}")
    proposal = Proposal.from_obj({k: v for k, v in answer.items() if k not in _NODE_FIELDS})
    if _hex(proposal.digest) != pid:
        raise ConfigError(f"the node answered another proposal than {pid}")
    _write_proposal(out, proposal)
    summary = {**_summary(proposal, out), "stale": answer.get("stale"), "expiresAt": answer.get("expiresAt")}
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)
