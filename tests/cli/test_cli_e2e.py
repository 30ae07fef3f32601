"""End to end: a real `keyreg node run` OS process, driven by the real CLI in other processes."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from keyreg.cli import app
from keyreg.cli.demo import spawn_node

for topic in ("init", "keys", "node", "subject"):  # register the topics under test on the root app
    importlib.import_module(f"keyreg.cli.{topic}")

PASSWORD = "e2e-password-not-secret"
ENV = {"KEYREG_PASSWORD": PASSWORD, "KEYREG_KDF_N": "16", "NO_COLOR": "1", "COLUMNS": "200"}


@pytest.fixture
def env() -> dict[str, str]:
    return dict(ENV)


def keyreg(env: dict[str, str], *args: str, ok: bool = True) -> Result:
    """Run a `keyreg` command in-process (the real typer app; the node is a separate OS process)."""
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.stderr
    return result


def kjson(env: dict[str, str], *args: str) -> Any:
    return json.loads(keyreg(env, *args, "--json").stdout)


@pytest.mark.e2e
def test_create_rotate_with_overlap_then_emergency(tmp_path: Path, env: dict[str, str]) -> None:
    """init --all-on-node, node run (OS process), subject create, keys rotate --overlap, --now,
    rotate-controllers, add: the single-machine mode, where the node signs everything."""
    d = tmp_path / "node"
    init = kjson(env, "init", "-d", str(d), "--controllers", "2", "--threshold", "2", "--all-on-node")
    assert len(init["controllers"]) == 2
    assert init["mode"] == "all-on-node"
    assert (d / "admin.token").stat().st_mode & 0o777 == 0o600
    with spawn_node(d, {"KEYREG_PASSWORD": PASSWORD, "KEYREG_KDF_N": "16"}) as node:
        created = kjson(env, "subject", "create", "-d", str(d))
        sid, old = created["subject"], created["keyId"]
        rotated = kjson(env, "keys", "rotate", "-d", str(d), "--overlap", "24h")
        new, t = rotated["newKey"], rotated["activeFrom"]
        assert rotated["retired"] == [{"keyId": old, "notAfter": t + 86400}]

        def verdict(kid: str, at: int) -> str:
            r = httpx.get(f"{node.api}/v1/subjects/{sid}/keys/{kid}", params={"at": at})
            return str(r.json()["status"])

        assert (verdict(old, t + 3600), verdict(new, t + 3600)) == ("valid", "valid")  # during the overlap
        assert (verdict(old, t + 86400), verdict(new, t + 86400)) == ("expired", "valid")  # after it
        check = keyreg(env, "keys", "check", old, "-d", str(d), "--at", str(t + 86400), ok=False)
        assert check.exit_code == 1
        assert "expired" in check.stdout

        # The service asks its node for the key to sign with: the new one.
        token = (d / "admin.token").read_text().strip()
        sk = httpx.get(f"{node.admin}/local/v1/signing-key", headers={"authorization": f"Bearer {token}"}).json()
        assert sk["keyId"] == new
        assert sorted(k["kid"] for k in sk["accepted"]) == sorted([old, new])

        # Emergency rotation: the new key is revoked now, a third key takes over.
        emergency = kjson(env, "keys", "rotate", "-d", str(d), "--now", "--reason", "compromised")
        assert set(emergency["revoked"]) == {old, new}
        assert verdict(new, emergency["revokedAt"]) == "revoked"
        assert verdict(emergency["newKey"], emergency["revokedAt"]) == "valid"

        # Controller pre-rotation, then the new controllers sign the next update.
        assert kjson(env, "subject", "rotate-controllers", "-d", str(d))["generation"] == 1
        added = kjson(env, "keys", "add", "-d", str(d), "--alg", "P-256", "--purpose", "auth")
        assert verdict(added["keyId"], added["notBefore"]) == "valid"

        shown = kjson(env, "subject", "show", "-d", str(d))
        assert shown["seq"] == 6  # inception, rotate, update+2 revocations, rotation, add
        log = kjson(env, "subject", "log", "-d", str(d))
        assert [e["kind"] for e in log["events"]] == [
            "inception",
            "update",
            "update",
            "revocation",
            "revocation",
            "rotation",
            "update",
        ]
        jwks = httpx.get(f"{node.api}/v1/subjects/{sid}/jwks.json").json()
        assert {k["kid"] for k in jwks["keys"]} == {emergency["newKey"], added["keyId"]}
    assert node.proc.returncode == 0  # clean shutdown on SIGTERM


def test_cli_errors_are_clear(tmp_path: Path, env: dict[str, str]) -> None:
    d = tmp_path / "node"
    keyreg(env, "init", "-d", str(d), "--json", "--all-on-node")
    # No node running at the configured address.
    r = keyreg(env, "subject", "create", "-d", str(d), "--node", "http://127.0.0.1:9", ok=False)
    assert r.exit_code == 2
    assert "[network]" in r.stderr
    assert "cannot reach the node" in r.stderr
    # Wrong password: a specific message and nothing secret.
    bad = {**env, "KEYREG_PASSWORD": "not-the-password"}
    r = keyreg(bad, "subject", "create", "-d", str(d), "--json", ok=False)
    assert r.exit_code == 2
    assert json.loads(r.stderr)["error"]["code"] == "keystore"
    assert "not-the-password" not in r.stderr
    assert PASSWORD not in r.stderr
    # Writing the inception to a file needs no node.
    out = tmp_path / "inception.json"
    created = kjson(env, "subject", "create", "-d", str(d), "--out", str(out))
    assert json.loads(out.read_text())["kind"] == "inception"
    assert created["submitted"] is False
    r = keyreg(env, "keys", "rotate", "-d", str(d), "--overlap", "soon", ok=False)
    assert r.exit_code == 2
    r = keyreg(env, "init", "-d", str(d), ok=False)
    assert r.exit_code == 2
    assert "already initialised" in r.stderr


@pytest.mark.e2e
def test_operator_custody_node_publishes_and_refuses_controller_actions(tmp_path: Path, env: dict[str, str]) -> None:
    """Default init, node run (OS process), subject create submits the controllers' inception, keys
    rotate --overlap and keys add are signed by the operator key alone (within its limits); revoke,
    emergency rotation and controller rotation fail with the ceremony commands named."""
    d = tmp_path / "node"
    pws = []
    for name in ("c1", "n1"):
        pws.append(tmp_path / f"{name}.pw")
        pws[-1].write_text(f"{name} own password\n")
    init = kjson(
        env,
        *("init", "-d", str(d), "--controller-password-file", str(pws[0]), "--next-password-file", str(pws[1])),
    )
    assert init["mode"] == "operator"
    operator = init["operator"]["operators"][0]
    with spawn_node(d, {"KEYREG_PASSWORD": PASSWORD, "KEYREG_KDF_N": "16"}) as node:
        # the controllers signed the inception at init: asking for another governor is refused, not dropped
        r = keyreg(env, "subject", "create", "-d", str(d), "--governor", "0x" + "11" * 20, ok=False)
        assert r.exit_code == 2
        assert "--governor" in r.stderr
        assert "keyreg init" in r.stderr
        created = kjson(env, "subject", "create", "-d", str(d), "--purpose", "sig")
        sid = created["subject"]
        assert sid == init["subject"]
        assert created["keyId"] == init["firstKey"]
        rotated = kjson(env, "keys", "rotate", "-d", str(d), "--overlap", "1h")
        added = kjson(env, "keys", "add", "-d", str(d))
        assert 0 < added["notAfter"] <= added["notBefore"] + init["operator"]["maxValidity"] + 5
        log = httpx.get(f"{node.api}/v1/subjects/{sid}/events").json()["events"]
        assert [e["kind"] for e in log] == ["inception", "update", "update"]
        from keyreg.config import load_config
        from keyreg.core.codec import event_from_obj
        from keyreg.core.eip712 import event_digest
        from keyreg.core.hashing import recover_address

        domain = load_config(d).domain
        for e in log[1:]:  # each update carries one signature, by the operator key
            signed = event_from_obj(e)
            signers = [recover_address(event_digest(domain, signed.event), s) for s in signed.signatures]
            assert ["0x" + a.hex() for a in signers] == [operator]
        for args in (
            ("keys", "revoke", rotated["newKey"]),
            ("keys", "rotate", "--now"),
            ("subject", "rotate-controllers"),
        ):
            r = keyreg(env, *args, "-d", str(d), ok=False)
            assert r.exit_code == 2, r.stderr
            assert "keyreg event propose" in r.stderr
            assert "controllers_off_node" in r.stderr or "operator key" in r.stderr
        r = keyreg(env, "keys", "add", "-d", str(d), "--purpose", "auth", ok=False)
        assert "operator_limit" in r.stderr  # the node judges it by the protocol's rules
        assert "outside the operators' purposes" in r.stderr
    assert node.proc.returncode == 0


def test_every_command_has_help(env: dict[str, str]) -> None:
    for cmd in (
        ["init"],
        ["node", "run"],
        ["subject", "create"],
        ["subject", "rotate-controllers"],
        ["keys", "rotate"],
        ["keys", "revoke"],
        ["keys", "check"],
    ):
        r = keyreg(env, *cmd, "--help")
        assert "Usage" in r.stdout
        assert "--data-dir" in r.stdout


@pytest.mark.e2e
def test_demo_runs_green() -> None:
    """`keyreg demo` (the README's main command) ends with both keys valid in the overlap, one after."""
    from keyreg.cli.demo import run_demo

    summary = run_demo(as_json=True)
    assert summary["ok"], summary
    during, after = summary["rotation"]
    assert (during["old"], during["new"], after["old"], after["new"]) == ("valid", "valid", "expired", "valid")
