"""`keyreg event propose|sign|attach|submit` offline: heads from event files and from the data dir's
store, every kind, the operators' authority, and clear errors (exit 2 with the code) for wrong input."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
from ceremony_support import DOMAIN, ED_KEY, NOW, make_subject, secret
from typer.testing import CliRunner, Result

from keyreg.cli import app
from keyreg.core.codec import encode_event, event_to_obj
from keyreg.core.hashing import address_of_private_key, sign_digest

importlib.import_module("keyreg.cli.event")

PASSWORD = "cli-ceremony-password-not-secret"


def keyreg(env: dict[str, str], *args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.stdout + result.stderr
    return result


def refused(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = keyreg(env, *args, "--json", ok=False)
    assert result.exit_code == 2, result.stdout
    err: dict[str, Any] = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert "Traceback" not in result.stderr
    return err


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("KEYREG_KDF_N", "16")
    pw = tmp_path / "password"
    pw.write_text(PASSWORD)
    return {"KEYREG_PASSWORD_FILE": str(pw), "NO_COLOR": "1", "COLUMNS": "200", "KEYREG_KDF_N": "16"}


def keyfile(path: Path, key: bytes) -> str:
    from keyreg.keys.keystore import Password, write_keyfile

    write_keyfile(path, key, Password(PASSWORD))
    return str(path)


def test_operator_update_and_delegation_from_a_log_file(tmp_path: Path, env: dict[str, str]) -> None:
    s = make_subject("cli", operators=2)
    log = tmp_path / "log.json"
    log.write_text(json.dumps([event_to_obj(e) for e in s.log]))
    sid = "0x" + s.state.subject.hex()
    base = ["--subject", sid, "--from-log", str(log), "--timestamp", str(NOW + 5), "--data-dir", str(tmp_path / "d")]
    p = tmp_path / "update.json"
    keyreg(env, "event", "propose", "update", "--out", str(p), *base, "--authority", "operators",
           "--key-id", "k2", "--public-key", "0x" + ED_KEY.hex(), "--purpose", "sig",
           "--not-after", str(NOW + 3600))  # fmt: skip
    obj = json.loads(p.read_text())
    assert obj["authority"]["name"] == "operators"
    assert obj["authority"]["threshold"] == 1
    # an operator's keyfile signs it; the proposal is then complete and yields a valid event
    signed = json.loads(keyreg(env, "event", "sign", str(p), "--key-file",
                               keyfile(tmp_path / "op.json", secret("cli-o1")), "--json").stdout)  # fmt: skip
    assert signed["complete"] is True
    assert signed["signer"] == "0x" + address_of_private_key(secret("cli-o1")).hex()
    out = tmp_path / "signed.json"
    keyreg(env, "event", "submit", str(p), "--out", str(out))
    replay = tmp_path / "full.json"
    replay.write_text(json.dumps([event_to_obj(e) for e in s.log] + [json.loads(out.read_text())]))
    verdicts = json.loads(keyreg(env, "event", "validate", str(replay), "--json").stdout)
    assert verdicts["accepted"] == 2
    assert verdicts["rejected"] == 0
    # beyond the operators' limits: refused before anyone signs, with the rule
    err = refused(env, "event", "propose", "update", "--out", str(tmp_path / "x.json"), *base,
                  "--authority", "operators", "--metadata", "nope")  # fmt: skip
    assert err["code"] == "operator_limit"
    # a delegation collects from the controllers; digest shows the proposal's event
    d = tmp_path / "delegation.json"
    operators = ["--operator", "0x" + "11" * 20, "--operator-threshold", "1", "--operator-purpose", "sig"]
    keyreg(env, "event", "propose", "delegation", "--out", str(d), *base, *operators, "--max-validity", "7d",
           "--max-keys", "4")  # fmt: skip
    obj = json.loads(d.read_text())
    assert obj["authority"]["signers"] == ["0x" + a.hex() for a in s.addresses]
    assert obj["event"]["operators"]["maxValidity"] == 7 * 86400
    digest = json.loads(keyreg(env, "event", "digest", str(d), "--json").stdout)
    assert digest["digest"] == obj["id"]
    assert digest["signers"] == []


def test_rotation_keeps_governor_and_operators_and_the_store_is_a_head_source(
    tmp_path: Path, env: dict[str, str]
) -> None:
    from keyreg.config import load_config
    from keyreg.registry import Registry
    from keyreg.store.sql import SqlStore

    s = make_subject("store", operators=1)
    data = tmp_path / "d"
    data.mkdir()
    cfg = load_config(data)
    assert cfg.domain == DOMAIN
    store = SqlStore(cfg.store_url, limits=cfg.limits)
    results = Registry(cfg.domain, store, cfg.limits, clock=lambda: float(NOW)).ingest([encode_event(s.log[0])], "api")
    assert results[0].status == "accepted"
    store.engine.dispose()
    sid = "0x" + s.state.subject.hex()
    r = tmp_path / "rotation.json"
    keyreg(env, "event", "propose", "rotation", "--out", str(r), "--subject", sid, "--store", "--data-dir", str(data),
           *[a for x in s.next_addresses for a in ("--controller", "0x" + x.hex())], "--threshold", "2", "--final",
           "--timestamp", str(NOW + 1))  # fmt: skip
    obj = json.loads(r.read_text())
    assert obj["event"]["operators"]["operators"] == ["0x" + a.hex() for a in s.state.operators.operators]
    assert obj["event"]["governor"] == "0x" + "00" * 20
    assert obj["event"]["nextCommitment"] == "0x" + "00" * 32
    # the keys in force cannot sign it, the revealed ones can; attach takes a wallet's signature
    err = refused(env, "event", "sign", str(r), "--key-file", keyfile(tmp_path / "c0.json", s.current[0]))
    assert err["code"] == "unauthorized_signer"
    assert "not one of the controllers" in err["message"]
    sig = "0x" + sign_digest(s.following[2], bytes.fromhex(obj["id"][2:])).hex()
    keyreg(env, "event", "attach", str(r), "--signature", sig.upper().replace("0X", "0x"))
    assert json.loads(r.read_text())["missing"] == 1


def test_wrong_input_gets_clear_errors_and_leaves_the_file_alone(tmp_path: Path, env: dict[str, str]) -> None:
    s = make_subject("errors")
    log = tmp_path / "log.json"
    log.write_text(json.dumps([event_to_obj(e) for e in s.log]))
    sid = "0x" + s.state.subject.hex()
    base = ["--subject", sid, "--from-log", str(log), "--timestamp", str(NOW + 5), "--data-dir", str(tmp_path / "d")]
    out = str(tmp_path / "p.json")
    assert refused(env, "event", "propose", "rename", "--out", out, *base)["code"] == "config"
    assert refused(env, "event", "propose", "revocation", "--out", out, *base)["code"] == "config"  # what to revoke?
    assert refused(env, "event", "propose", "revocation", "--out", out, *base, "--key-id", "nope")["code"] == (
        "invalid_transition"
    )
    assert refused(env, "event", "propose", "rotation", "--out", out, *base, "--threshold", "2")["code"] == "config"
    rotation = ["--threshold", "2", "--final", *[a for x in s.addresses for a in ("--controller", "0x" + x.hex())]]
    assert refused(env, "event", "propose", "rotation", "--out", out, *base, *rotation)["code"] == "commitment_mismatch"
    other = "0x" + "ab" * 32
    base_other = ["--subject", other, *base[2:]]
    assert refused(env, "event", "propose", "revocation", "--out", out, *base_other, "--whole-subject")["code"] == (
        "config"
    )
    keyreg(env, "event", "propose", "revocation", "--out", out, *base, "--key-id", "k1")
    before = Path(out).read_text()
    digest = bytes.fromhex(json.loads(before)["id"][2:])
    good = "0x" + sign_digest(s.current[0], digest).hex()
    outsider = "0x" + sign_digest(s.outsiders[0], digest).hex()
    # one bad signature among good ones: nothing is attached
    assert refused(env, "event", "attach", out, "--signature", good, "--signature", outsider)["code"] == (
        "unauthorized_signer"
    )
    assert refused(env, "event", "attach", out, "--signature", "0x1234")["code"] == "bad_signature"
    assert Path(out).read_text() == before
    assert refused(env, "event", "submit", out, "--out", str(tmp_path / "e.json"))["code"] == "incomplete_proposal"
    wrong = tmp_path / "wrong.json"
    keyfile(wrong, s.current[1])
    bad_env = {**env, "KEYREG_PASSWORD_FILE": str(tmp_path / "nope")}
    assert refused(bad_env, "event", "sign", out, "--key-file", str(wrong))["code"] == "keystore"
    (tmp_path / "badpw").write_text("not the password")
    bad_env = {**env, "KEYREG_PASSWORD_FILE": str(tmp_path / "badpw")}
    err = refused(bad_env, "event", "sign", out, "--key-file", str(wrong))
    assert err["code"] == "keystore"
    assert "not the password" not in json.dumps(err)
    Path(out).write_text(before.replace('"reason": ""', '"reason": "x"'))
    assert refused(env, "event", "sign", out, "--key-file", str(wrong))["code"] == "malformed"  # id no longer matches
    missing = keyreg(env, "event", "typed-data", str(tmp_path / "missing.json"), ok=False)
    assert missing.exit_code == 2
    assert "error [config]: cannot read" in missing.stderr
