"""``keyreg demo``: a self-contained local run of the product on loopback.

Starts a real ``keyreg node run`` process on free loopback ports with a throwaway data dir,
creates a subject, rotates its service key with an overlap, shows both keys valid during the
overlap and only the new one after (explicit ``?at=`` times, so nothing waits), verifies JWTs
against the node's JWKS, prints a summary and stops the node.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..core.errors import KeyregError, NetworkError
from . import app as root
from .common import JsonOpt, NodeClient, err_console, fmt_time, handles_errors, out_console, print_json


@dataclass
class RunningNode:
    proc: subprocess.Popen[bytes]
    api: str
    admin: str
    data_dir: Path
    log_path: Path


@contextlib.contextmanager
def spawn_node(
    data_dir: Path, env: dict[str, str] | None = None, timeout: float = 60.0, args: tuple[str, ...] = ()
) -> Iterator[RunningNode]:
    """Run ``keyreg node run`` as an OS process on free loopback ports; stop it (SIGTERM) on exit.

    Waits until /v1/health answers (deadline ``timeout``); the ports come from <data_dir>/node.json.
    """
    import httpx

    runfile = data_dir / "node.json"
    with contextlib.suppress(FileNotFoundError):
        runfile.unlink()
    log_path = data_dir / "node.log"
    cmd = [sys.executable, "-m", "keyreg.cli.node", "node", "run", "-d", str(data_dir)]
    cmd += ["--host", "127.0.0.1", "--port", "0", "--admin-port", "0", *args]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + timeout
        info: dict[str, Any] = {}
        while True:
            if proc.poll() is not None:
                tail = log_path.read_text(errors="replace")[-2000:]
                raise NetworkError(f"the node process exited with status {proc.returncode}:\n{tail}")
            if time.monotonic() > deadline:
                raise NetworkError(f"the node did not answer /v1/health within {timeout:.0f}s (log: {log_path})")
            try:
                info = json.loads(runfile.read_text())
                if info.get("pid") == proc.pid and httpx.get(info["api"] + "/v1/health", timeout=2).status_code == 200:
                    break
            except (OSError, ValueError, httpx.HTTPError):
                pass
            time.sleep(0.05)  # polling a condition (the child's health) with a deadline
        yield RunningNode(proc, info["api"], info["admin"], data_dir, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _step(text: str) -> None:
    err_console.print(f"[green]✓[/] {text}", highlight=False)


def run_demo(as_json: bool = False, keep: bool = False) -> dict[str, Any]:
    """The demo scenario; returns its summary."""
    import httpx

    from ..config import load_config
    from ..core.codec import event_to_obj
    from ..core.eip712 import event_digest
    from ..keys.jwt import JWTError, verify_jwt
    from ..keys.keystore import Keystore, Password
    from ..keys.operations import Head, sign_update
    from ..keys.rotation import KeyWindow, plan_manual_rotation
    from ..keys.service_keys import ServiceKey
    from .init import OffNodeCustody, init_data_dir, pending_inception

    tmp = tempfile.mkdtemp(prefix="keyreg-demo-")
    data_dir = Path(tmp) / "node"
    password = secrets.token_urlsafe(24)
    # Demo only: a cheap KDF so the throwaway keystore opens instantly (real keystores use n = 2**15).
    env = {"KEYREG_PASSWORD": password, "KEYREG_KDF_N": "1024"}
    os.environ["KEYREG_KDF_N"] = "1024"
    summary: dict[str, Any] = {"dataDir": str(data_dir)}
    # Default custody: the node gets only its operator key; the three controllers and their next
    # generation are separate keyfiles under their own (random, never shown) passwords beside it.
    custody = OffNodeCustody(
        custody_dir=Path(tmp) / "custody",
        controllers=3,
        threshold=2,
        controller_passwords=[Password(secrets.token_urlsafe(24)) for _ in range(3)],
        next_passwords=[Password(secrets.token_urlsafe(24)) for _ in range(3)],
        key_id="svc-a",
    )
    init = init_data_dir(data_dir, Password(password), custody=custody)
    _step(f"keyreg init --controllers 3 --threshold 2   (data dir {data_dir})")
    _step(
        f"  node keystore: operator key {init['operator']['operators'][0][:12]}… only; 3 controllers and the next "
        f"generation in {init['custodyDir']} (to move off the machine)"
    )
    summary["custody"] = {k: init[k] for k in ("mode", "operator", "controllers", "custodyDir")}
    config = load_config(data_dir)
    with spawn_node(data_dir, env) as node:
        _step(f"keyreg node run   (API {node.api}, admin {node.admin}, pid {node.proc.pid})")
        ks = Keystore.open(data_dir / "keystore").unlock(Password(password))
        client = NodeClient(node.api)
        token = (data_dir / "admin.token").read_text().strip()
        admin = httpx.Client(base_url=node.admin, headers={"authorization": f"Bearer {token}"}, timeout=10)

        signed = pending_inception(data_dir)  # signed at init by 2 of the 3 controllers
        t0 = signed.event.timestamp
        old = ks.service_key(signed.event.keys[0].key_id)
        subject = event_digest(config.domain, signed.event)
        client.post_events([event_to_obj(signed)])
        sid = "0x" + subject.hex()
        summary["subject"] = sid
        _step(f"keyreg subject create   (subject {sid[:18]}…, key {old.key_id}, 2-of-3 controllers off the node)")

        jwt_old = admin.post("/local/v1/sign", json={"jwt": {"sub": "alice", "iat": t0}}).json()["jwt"]
        jwks_now = client.get(f"/v1/subjects/{sid}/jwks.json")
        verify_jwt(jwt_old, jwks_now)
        _step(f"service signed a JWT with {old.key_id} (from the admin endpoint); verified with the node's JWKS")

        overlap = 3600
        state = client.get(f"/v1/subjects/{sid}")
        head = Head(subject, state["seq"], bytes.fromhex(state["head"][2:]), state["timestamp"])
        t1 = int(time.time())
        windows = [KeyWindow(k["keyId"], k["validFrom"], k["notAfter"], k["revokedAt"]) for k in state["keys"]]
        plan = plan_manual_rotation(t1, windows, overlap)
        new = ServiceKey.generate("Ed25519", "svc-b")
        ks.add_service_key(new, ("sig",))
        policy = ks.operator_policy
        assert policy is not None
        # an operator key publishes only keys that expire within its maxValidity
        published = new.published(("sig",), t1, head.next_timestamp(t1) + policy.max_validity)
        client.post_events([event_to_obj(sign_update(ks, config.domain, head, t1, [published], plan.retire))])
        _step(
            f"keyreg keys rotate --overlap 1h   (new key {new.key_id}; {old.key_id} retires at "
            f"{fmt_time(t1 + overlap)}; signed by the operator key alone)"
        )

        current = admin.get("/local/v1/signing-key").json()
        assert current["keyId"] == new.key_id, current["keyId"]
        jwt_new = admin.post("/local/v1/sign", json={"jwt": {"sub": "bob", "iat": t1}}).json()["jwt"]
        _step(f"the admin endpoint now hands out {new.key_id}; it accepts {len(current['accepted'])} keys")

        times = {"during overlap": t1 + overlap // 2, "after overlap": t1 + overlap + 1}
        rows = []
        for label, at in times.items():
            verdicts = {
                k.key_id: client.get(f"/v1/subjects/{sid}/keys/{k.key_id}", at=at)["status"] for k in (old, new)
            }
            jwks = client.get(f"/v1/subjects/{sid}/jwks.json", at=at)
            jwt_ok = {}
            for name, tok in (("old", jwt_old), ("new", jwt_new)):
                try:
                    verify_jwt(tok, jwks)
                    jwt_ok[name] = True
                except JWTError:
                    jwt_ok[name] = False
            rows.append(
                {
                    "when": label,
                    "at": at,
                    "old": verdicts[old.key_id],
                    "new": verdicts[new.key_id],
                    "jwksKids": [k["kid"] for k in jwks["keys"]],
                    "jwtOld": jwt_ok["old"],
                    "jwtNew": jwt_ok["new"],
                }
            )
        summary["rotation"] = rows
        ok = (
            rows[0]["old"] == rows[0]["new"] == "valid"
            and rows[1]["old"] == "expired"
            and rows[1]["new"] == "valid"
            and rows[0]["jwtOld"]
            and rows[0]["jwtNew"]
            and not rows[1]["jwtOld"]
            and rows[1]["jwtNew"]
        )
        summary["ok"] = ok
        log = client.get(f"/v1/subjects/{sid}/events")
        summary["events"] = len(log["events"])
        admin.close()
        client.close()
    _step("node stopped (SIGTERM)")
    if not keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    if not as_json:
        table = Table(title=f"zero-downtime rotation of {summary['subject'][:18]}… (overlap 1h)")
        for col in ("when", "time", f"{old.key_id}", f"{new.key_id}", "JWKS kids", "old JWT", "new JWT"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["when"],
                time.strftime("%H:%M:%S", time.localtime(r["at"])),
                r["old"],
                r["new"],
                ", ".join(r["jwksKids"]),
                "verifies" if r["jwtOld"] else "rejected",
                "verifies" if r["jwtNew"] else "rejected",
            )
        out_console.print(table)
        verdict = "[bold green]demo OK[/]" if ok else "[bold red]demo FAILED[/]"
        out_console.print(f"{verdict}: both keys valid during the overlap, only the new one after it.")
    return summary


@root.command("demo")
@handles_errors
def demo(
    as_json: JsonOpt = False,
    keep: Annotated[bool, typer.Option(help="Keep the temporary data dir (and the node log).")] = False,
) -> None:
    """Run a self-contained local demo: node on loopback, subject, key rotation with overlap, JWT checks."""
    import httpx

    try:
        summary = run_demo(as_json, keep)
    except (httpx.HTTPError, AssertionError) as exc:
        raise KeyregError(f"demo failed: {exc}") from None
    if as_json:
        print_json(summary)
    if not summary["ok"]:
        raise typer.Exit(1)
