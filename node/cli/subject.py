"""``keyreg subject create|show|log|rotate-controllers``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

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
    parse_time,
    print_json,
    subject_arg,
)
from .direct_anchor import AnchorTimeoutOpt, WaitOpt, anchor_reduction

subject_app = typer.Typer(help="Create and inspect subjects (the identities that publish keys).", no_args_is_help=True)
root.add_typer(subject_app, name="subject")


@subject_app.command("create")
@handles_errors
def create(
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    alg: ServiceAlgOpt = "Ed25519",
    purpose: ServicePurposeOpt = None,
    key_id: Annotated[str | None, typer.Option(help="Key id of the first service key (default: derived).")] = None,
    metadata: Annotated[str, typer.Option(help="Free-form metadata stored in the log (e.g. a URL).")] = "",
    governor: Annotated[
        str | None, typer.Option(help="Address of a DAO governor allowed to revoke this subject's keys.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the signed inception here instead of submitting it.")] = None,
    node: NodeOpt = None,
    password_file: PasswordFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create this node's subject: an inception signed by the keystore's controllers, with a first service key.

    The subject id is the inception's digest (self-certifying). The event is submitted to the node
    (--node, default from the config) or written to --out.
    """
    from ..core.codec import event_to_obj
    from ..core.eip712 import event_digest
    from ..core.records import ZERO20
    from ..keys.operations import sign_inception
    from ..keys.service_keys import ServiceKey, check_alg

    s = Session(data_dir, password_file, node)
    if not s.keystore.holds_controllers:  # operator custody: the controllers signed it at `keyreg init`
        from .init import submit_pending_inception

        asked = {"--governor": governor, "--key-id": key_id, "--metadata": metadata, "--purpose": purpose, "--alg": alg}
        submit_pending_inception(s, data_dir, out, as_json, asked)
        return
    if s.keystore.subject is not None:
        raise ConfigError(f"this keystore already has subject 0x{s.keystore.subject.hex()}")
    gov = ZERO20
    if governor:
        try:
            gov = bytes.fromhex(governor.removeprefix("0x"))
        except ValueError:
            gov = b""
        if len(gov) != 20:
            raise ConfigError(f"--governor must be a 20-byte 0x address, got {governor!r}")
    purposes = tuple(purpose or ["sig"])
    now = int(time.time())
    key = ServiceKey.generate(check_alg(alg), key_id)
    signed = sign_inception(s.keystore, s.config.domain, now, [key.published(purposes, now)], metadata, gov)
    subject = event_digest(s.config.domain, signed.event)
    obj = event_to_obj(signed)
    if out is not None:
        out.write_text(json.dumps(obj, indent=2) + "\n")
    else:
        s.client.post_events([obj])
    s.keystore.add_service_key(key, purposes)
    s.keystore.set_subject(subject)
    summary = {
        "subject": "0x" + subject.hex(),
        "did": f"did:keyreg:{s.config.network.chain_id}:0x{subject.hex()}",
        "keyId": key.key_id,
        "alg": key.alg,
        "submitted": out is None,
        "out": str(out) if out else None,
    }
    if as_json:
        print_json(summary)
        return
    err_console.print(f"[green]subject created[/] 0x{subject.hex()}")
    err_console.print(f"  first key {key.key_id} ({key.alg}, {', '.join(purposes)})")
    err_console.print(f"  {'written to ' + str(out) if out else 'submitted to ' + s.client.url}")
    out_console.print("0x" + subject.hex())


@subject_app.command("show")
@handles_errors
def show(
    subject: Annotated[str | None, typer.Argument(help="Subject id (default: this keystore's subject).")] = None,
    at: Annotated[str | None, typer.Option(help="Key status at this time (now, +1h, unix, ISO 8601).")] = None,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show a subject's head, controllers, keys (with their status now or --at) and anchor status."""
    if subject is None:
        s = Session(data_dir, None, node, unlock=False)
        client, sid = s.client, s.subject
    else:
        client, sid = NodeClient.for_config(load(data_dir), node), subject_arg(subject, bytes)
    st = client.get(f"/v1/subjects/0x{sid.hex()}", at=parse_time(at))
    if as_json:
        print_json(st)
        return
    out_console.print(f"[bold]subject[/] {st['subject']}")
    out_console.print(f"  head       seq {st['seq']}  {st['head']}  ({fmt_time(st['timestamp'])})")
    out_console.print(f"  controllers {st['threshold']} of {len(st['controllers'])}: {', '.join(st['controllers'])}")
    out_console.print(
        f"  anchor     {st['anchor']['status']}"
        + (f" at seq {st['anchor']['seq']}" if st["anchor"]["seq"] is not None else "")
    )
    if st["disputed"]:
        out_console.print("  [bold red]DISPUTED[/]: verifiers fail closed until an anchor resolves it")
    table = Table(title=f"keys at {fmt_time(st['at'])}")
    for col in ("key id", "alg", "purposes", "valid from", "not after", "status"):
        table.add_column(col)
    for k in st["keys"]:
        style = "green" if k["status"] == "valid" else "yellow" if k["status"] == "not-yet-valid" else "red"
        table.add_row(
            k["keyId"],
            k["alg"],
            ",".join(k["purposes"]),
            fmt_time(k["validFrom"]),
            fmt_time(k["notAfter"]),
            f"[{style}]{k['status']}[/]",
        )
    out_console.print(table)


@subject_app.command("log")
@handles_errors
def show_log(
    subject: Annotated[str | None, typer.Argument(help="Subject id (default: this keystore's subject).")] = None,
    start: Annotated[int, typer.Option("--from", help="First seq.", min=0)] = 0,
    limit: Annotated[int, typer.Option(help="At most this many events.", min=1, max=1000)] = 100,
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a subject's signed event log (the hash chain), oldest first."""
    s = Session(data_dir, None, node, unlock=False)
    sid = subject_arg(subject, lambda: s.subject)
    body = s.client.get(f"/v1/subjects/0x{sid.hex()}/events", **{"from": start, "limit": limit})
    if as_json:
        print_json(body)
        return
    table = Table(title=f"log of 0x{sid.hex()[:16]}…")
    for col in ("seq", "kind", "time", "what", "signatures"):
        table.add_column(col)
    for i, e in enumerate(body["events"], start=start):
        if e["kind"] == "inception":
            what = f"controllers {e['threshold']}/{len(e['controllers'])}; keys " + ", ".join(
                k["keyId"] for k in e["keys"]
            )
        elif e["kind"] == "update":
            parts = [f"+{k['keyId']} from {fmt_time(max(k['notBefore'], e['timestamp']))}" for k in e["publish"]]
            parts += [f"retire {r['keyId']} at {fmt_time(r['notAfter'])}" for r in e["retire"]]
            what = "; ".join(parts) or "metadata"
        elif e["kind"] == "rotation":
            what = f"controllers rotated to {e['threshold']}/{len(e['controllers'])}"
        else:
            what = f"revoke {e['keyId'] or 'SUBJECT'} from {fmt_time(e['effectiveAt'])}" + (
                f" ({e['reason']})" if e["reason"] else ""
            )
        table.add_row(str(e.get("seq", i)), e["kind"], fmt_time(e["timestamp"]), what, str(len(e["signatures"])))
    out_console.print(table)


@subject_app.command("rotate-controllers")
@handles_errors
def rotate_controllers(
    data_dir: DataDirOpt = DEFAULT_DATA_DIR,
    node: NodeOpt = None,
    password_file: PasswordFileOpt = None,
    wait: WaitOpt = True,
    anchor_timeout: AnchorTimeoutOpt = 120.0,
    as_json: JsonOpt = False,
) -> None:
    """Rotate the subject's controller keys (pre-rotation).

    Signs a rotation with the pre-committed *next* keys, revealing them, and commits to a freshly
    generated next set. The old current keys lose all power once the node accepts it, and for good
    once the rotation is anchored: it is anchored directly by default and the command waits for it
    (--no-wait to skip waiting, with a warning).
    """
    from ..core.codec import event_to_obj
    from ..keys.operations import sign_controller_rotation

    s = Session(data_dir, password_file, node)
    head = s.head()
    signed = sign_controller_rotation(s.keystore, s.config.domain, head, int(time.time()))
    s.client.post_events([event_to_obj(signed)])
    s.keystore.commit_controller_rotation()
    summary: dict[str, Any] = {
        "subject": "0x" + head.subject.hex(),
        "seq": head.seq + 1,
        "generation": s.keystore.generation,
        "controllers": ["0x" + a.hex() for a in s.keystore.controller_addresses(s.keystore.generation)],
    }
    err_console.print(f"[green]controllers rotated[/] (seq {summary['seq']}, generation {summary['generation']})")
    err_console.print(f"  now controlled by {', '.join(summary['controllers'])}")
    summary["anchor"] = anchor_reduction(
        data_dir,
        s.client,
        head.subject,
        head.seq + 1,
        wait=wait,
        timeout=anchor_timeout,
        what="replaces (the old controllers could still sign a competing event)",
    )
    if as_json:
        print_json(summary)
