"""``keyreg keys add|retire|rotate|revoke|list|check``: the subject's service keys."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from ..core.errors import ConfigError
from . import app as root
from .common import (
    DEFAULT_DATA_DIR,
    DataDirOpt,
    JsonOpt,
    NodeClient,
    NodeOpt,
    PasswordFileOpt,
    ServiceAlgOpt,
    ServicePurposeOpt,
    Session,
    err_console,
    fmt_time,
    handles_errors,
    load,
    out_console,
    parse_duration,
    parse_time,
    print_json,
    subject_arg,
)
from .direct_anchor import AnchorTimeoutOpt, WaitOpt, anchor_reduction

if TYPE_CHECKING:
    from ..keys.operations import Head
    from ..keys.rotation import KeyWindow

keys_app = typer.Typer(help="Publish, rotate, retire and revoke the subject's service keys.", no_args_is_help=True)
root.add_typer(keys_app, name="keys")


def _windows(state: dict[str, Any], key_ids: set[str]) -> list[KeyWindow]:
    from ..keys.rotation import KeyWindow

    return [
        KeyWindow(k["keyId"], k["validFrom"], k["notAfter"], k["revokedAt"])
        for k in state["keys"]
        if k["keyId"] in key_ids
    ]


def _head(state: dict[str, Any]) -> Head:
    from ..keys.operations import Head

    return Head(bytes.fromhex(state["subject"][2:]), state["seq"], bytes.fromhex(state["head"][2:]), state["timestamp"])


def _operator_not_after(s: Session, timestamp: int, wanted: int) -> int:
    """On an operator-custody node a key must expire within maxValidity of the update: the default
    end (``wanted`` 0) is the longest the operator may publish; an explicit one is kept (and
    refused before signing if it is too late)."""
    policy = s.keystore.operator_policy
    if policy is None or wanted:
        return wanted
    return timestamp + policy.max_validity


def _submit(s: Session, events: list[Any]) -> list[dict[str, Any]]:
    from ..core.codec import event_to_obj

    return s.client.post_events([event_to_obj(e) for e in events])


def _anchor(
    s: Session, data_dir: Path, results: list[dict[str, Any]], wait: bool, timeout: float, what: str
) -> dict[str, Any]:
    """Anchor the subject directly up to the last submitted event (it reduces authority: ADR 0012)."""
    seq = max(int(r["seq"]) for r in results)
    return anchor_reduction(data_dir, s.client, s.subject, seq, wait=wait, timeout=timeout, what=what)


@keys_app.command("add")
@handles_errors
def add(
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    alg: ServiceAlgOpt = "Ed25519",
    purpose: ServicePurposeOpt = None,
    key_id: Annotated[str | None, typer.Option(help="Key id (default: derived from the key).")] = None,
    not_before: Annotated[str | None, typer.Option(help="Valid from (now, +1h, unix, ISO 8601); default now.")] = None,
    not_after: Annotated[str | None, typer.Option(help="Valid until (default: no end).")] = None,
    node: NodeOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate a service key, keep it in the keystore, and publish it."""
    from ..keys.operations import sign_update
    from ..keys.service_keys import ServiceKey, check_alg

    s = Session(data_dir, password_file, node)
    now = int(time.time())
    nb = parse_time(not_before, now) or now
    purposes = tuple(purpose or ["sig"])
    key = ServiceKey.generate(check_alg(alg), key_id)
    state = s.state()
    head = _head(state)
    na = _operator_not_after(s, head.next_timestamp(now), parse_time(not_after, now) or 0)
    signed = sign_update(s.keystore, s.config.domain, head, now, [key.published(purposes, nb, na)])
    s.keystore.add_service_key(key, purposes)
    _submit(s, [signed])
    out = {"keyId": key.key_id, "alg": key.alg, "purposes": list(purposes), "notBefore": nb, "notAfter": na}
    if as_json:
        print_json(out)
    else:
        err_console.print(f"[green]published[/] {key.key_id} ({key.alg}) valid from {fmt_time(nb)}")


@keys_app.command("retire")
@handles_errors
def retire(
    key_id: Annotated[str, typer.Argument(help="Key id to retire.")],
    at: Annotated[str, typer.Option(help="Last instant of validity (now, +24h, unix, ISO 8601).")] = "now",
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    password_file: PasswordFileOpt = None,
    wait: WaitOpt = True,
    anchor_timeout: AnchorTimeoutOpt = 120.0,
    as_json: JsonOpt = False,
) -> None:
    """Retire a key: it stays valid until --at, then expires (a planned end; use `revoke` for compromise).

    Ending a key earlier reduces authority, so the retirement is anchored directly by default and
    the command waits for it (--no-wait to skip waiting, with a warning).
    """
    from ..keys.operations import reduces_authority, sign_update

    s = Session(data_dir, password_file, node)
    now = int(time.time())
    when = parse_time(at, now)
    assert when is not None
    if when < now:
        raise ConfigError("a retirement cannot be in the past; use `keyreg keys revoke --at` for that")
    state = s.state()
    signed = sign_update(s.keystore, s.config.domain, _head(state), now, retire=[(key_id, when)])
    results = _submit(s, [signed])
    err_console.print(f"[green]retired[/] {key_id}: valid until {fmt_time(when)}")
    anchor: dict[str, Any] = {"mode": "none", "status": "not needed"}
    if reduces_authority(signed.event, {k["keyId"]: k["notAfter"] for k in state["keys"]}):
        anchor = _anchor(s, data_dir, results, wait, anchor_timeout, "retires")
    if as_json:
        print_json({"keyId": key_id, "notAfter": when, "anchor": anchor})


@keys_app.command("rotate")
@handles_errors
def rotate(
    overlap: Annotated[str, typer.Option(help="How long the old key stays valid after the new one activates.")] = "24h",
    now_: Annotated[bool, typer.Option("--now", help="Emergency: revoke the old key(s) now, no overlap.")] = False,
    reason: Annotated[str, typer.Option(help="Reason recorded with an emergency revocation.")] = "",
    activate_in: Annotated[str, typer.Option(help="Publish ahead: the new key activates after this delay.")] = "0",
    key: Annotated[
        list[str] | None,
        typer.Option("--key", help="Rotate only these key ids (default: all live keys in the keystore)."),
    ] = None,
    alg: ServiceAlgOpt = "Ed25519",
    purpose: ServicePurposeOpt = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    password_file: PasswordFileOpt = None,
    wait: WaitOpt = True,
    anchor_timeout: AnchorTimeoutOpt = 120.0,
    as_json: JsonOpt = False,
) -> None:
    """Rotate the service key without downtime.

    Normal: publish a new key (active now, or after --activate-in) and retire the old one(s) at
    activation + --overlap, so both are valid during the overlap. --now (emergency): publish the new
    key and revoke the old one(s) effective immediately (a Revocation event per key). Retiring or
    revoking old keys reduces authority, so the events are anchored directly by default and the
    command waits for it (--no-wait to skip waiting, with a warning).
    """
    from ..keys.operations import Head, reduces_authority, sign_revocation, sign_update
    from ..keys.rotation import plan_manual_rotation
    from ..keys.service_keys import ServiceKey, check_alg

    s = Session(data_dir, password_file, node)
    if now_:
        s.keystore.require_controllers("an emergency rotation (it revokes the old keys)")
    now = int(time.time())
    state = s.state()
    mine = {i.key_id for i in s.keystore.service_key_infos()}
    targets = set(key) if key else mine
    unknown = targets - {k["keyId"] for k in state["keys"]}
    if key and unknown:
        raise ConfigError(f"the subject has no key {sorted(unknown)[0]!r}")
    live = [w for w in _windows(state, targets) if w.ends_after(now)]
    purposes = tuple(purpose or ["sig"])
    new = ServiceKey.generate(check_alg(alg))
    s.keystore.add_service_key(new, purposes)
    head = _head(state)
    if now_:
        from ..core.eip712 import event_digest

        ts = head.next_timestamp(now)
        events = [sign_update(s.keystore, s.config.domain, head, ts, [new.published(purposes, ts)])]
        for w in live:
            if w.revoked_at is not None:
                continue
            prev = events[-1].event
            h = Head(head.subject, prev.seq, event_digest(s.config.domain, prev), ts)
            events.append(
                sign_revocation(s.keystore, s.config.domain, h, ts, w.key_id, ts, reason or "emergency rotation")
            )
        results = _submit(s, events)
        result: dict[str, Any] = {
            "mode": "emergency",
            "newKey": new.key_id,
            "activeFrom": now,
            "revoked": [w.key_id for w in live],
            "revokedAt": now,
            # The one path that skips publish-ahead (node/keys/rotation.py:plan_emergency_rotation).
            "skipsPublishAhead": True,
        }
    else:
        plan = plan_manual_rotation(now, live, parse_duration(overlap), parse_duration(activate_in))
        assert plan.activate_at is not None
        na = _operator_not_after(s, head.next_timestamp(now), 0)
        events = [
            sign_update(
                s.keystore,
                s.config.domain,
                head,
                now,
                [new.published(purposes, plan.activate_at, na)],
                plan.retire,
            )
        ]
        results = _submit(s, events)
        result = {
            "mode": "overlap",
            "newKey": new.key_id,
            "activeFrom": plan.activate_at,
            "retired": [{"keyId": k, "notAfter": t} for k, t in plan.retire],
        }
    err_console.print(
        f"[green]rotated[/]: new key {new.key_id} ({new.alg}) active from {fmt_time(result['activeFrom'])}"
    )
    if now_:
        for k in result["revoked"]:
            err_console.print(f"  [red]revoked[/] {k} effective {fmt_time(now)}")
        err_console.print(
            "  [yellow]publish-ahead skipped[/] (emergency): verifiers that refresh their JWKS on a timer "
            "reject the new key's tokens until they refetch"
        )
    else:
        for r in result["retired"]:
            err_console.print(f"  {r['keyId']} stays valid until {fmt_time(r['notAfter'])} (overlap)")
    current = {k["keyId"]: k["notAfter"] for k in state["keys"]}
    result["anchor"] = {"mode": "none", "status": "not needed"}
    if any(reduces_authority(e.event, current) for e in events):
        what = "revokes" if now_ else "retires"
        result["anchor"] = _anchor(s, data_dir, results, wait, anchor_timeout, what)
    if as_json:
        print_json(result)


@keys_app.command("revoke")
@handles_errors
def revoke(
    key_id: Annotated[str, typer.Argument(help="Key id to revoke.")],
    at: Annotated[str, typer.Option(help="Effective time (now, -1h for 'since an hour ago', unix, ISO 8601).")] = "now",
    reason: Annotated[str, typer.Option(help="Reason recorded in the log.")] = "",
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    password_file: PasswordFileOpt = None,
    wait: WaitOpt = True,
    anchor_timeout: AnchorTimeoutOpt = 120.0,
    as_json: JsonOpt = False,
) -> None:
    """Revoke a key from an effective time (may be in the past: signatures made after it become invalid).

    The revocation is anchored directly (the registry contract records it as the subject's head, so
    no node or bundle can hide it) and the command waits for the anchor to be confirmed; --no-wait
    skips the wait, with a warning.
    """
    from ..keys.operations import sign_revocation

    s = Session(data_dir, password_file, node)
    now = int(time.time())
    when = parse_time(at, now)
    assert when is not None
    results = _submit(s, [sign_revocation(s.keystore, s.config.domain, _head(s.state()), now, key_id, when, reason)])
    err_console.print(f"[red]revoked[/] {key_id} effective {fmt_time(when)}")
    anchor = _anchor(s, data_dir, results, wait, anchor_timeout, "revokes")
    if as_json:
        print_json({"keyId": key_id, "revokedAt": when, "reason": reason, "anchor": anchor})


@keys_app.command("list")
@handles_errors
def list_keys(
    at: Annotated[str | None, typer.Option(help="Status at this time (default now).")] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """List the subject's published keys with their status, marking those this keystore holds."""
    s = Session(data_dir, None, node, unlock=False)
    state = s.client.get(f"/v1/subjects/0x{s.subject.hex()}", at=parse_time(at))
    held = {i.key_id for i in s.keystore.service_key_infos()}
    rows = [{**k, "held": k["keyId"] in held} for k in state["keys"]]
    if as_json:
        print_json({"subject": state["subject"], "at": state["at"], "keys": rows})
        return
    table = Table(title=f"keys of {state['subject'][:18]}… at {fmt_time(state['at'])}")
    for col in ("key id", "alg", "valid from", "not after", "status", "held"):
        table.add_column(col)
    for k in rows:
        table.add_row(
            k["keyId"],
            k["alg"],
            fmt_time(k["validFrom"]),
            fmt_time(k["notAfter"]),
            k["status"],
            "yes" if k["held"] else "",
        )
    out_console.print(table)


@keys_app.command("check")
@handles_errors
def check(
    key_id: Annotated[str, typer.Argument(help="Key id.")],
    subject: Annotated[str | None, typer.Option(help="Subject id (default: this keystore's).")] = None,
    at: Annotated[str | None, typer.Option(help="Time to check (now, +25h, unix, ISO 8601).")] = None,
    purpose: Annotated[str | None, typer.Option(help="Purpose to check.")] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask the node for the verdict on a key: valid, not-yet-valid, expired, revoked, ... Exit 1 if not valid."""
    # The keystore is opened only to learn this node's own subject: checking another subject's key
    # needs no keystore.
    sid = subject_arg(subject, lambda: Session(data_dir, None, node, unlock=False).subject)
    client = NodeClient.for_config(load(data_dir), node)
    v = client.get(f"/v1/subjects/0x{sid.hex()}/keys/{key_id}", at=parse_time(at), purpose=purpose)
    if as_json:
        print_json(v)
    else:
        style = "green" if v["valid"] else "red"
        out_console.print(f"[{style}]{v['status']}[/] {key_id} at {fmt_time(v['at'])}: {v['reason']}")
    if not v["valid"]:
        raise typer.Exit(1)
