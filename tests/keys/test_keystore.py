"""Keystore: round trips, wrong password, file modes, eth-keyfile interop, nothing secret leaks."""

from __future__ import annotations

import json
import logging
import stat
from pathlib import Path

import pytest
from eth_keyfile import create_keyfile_json, decode_keyfile_json

from keyreg.core.builder import controller_set
from keyreg.keys.keystore import Keystore, KeystoreError, Password, resolve_password
from keyreg.keys.service_keys import ServiceKey

PW = "correct horse battery staple"


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYREG_KDF_N", "16")


@pytest.fixture
def ks(tmp_path: Path) -> Keystore:
    return Keystore.create(tmp_path / "keystore", Password(PW), controllers=3, threshold=2)


def test_round_trip_controllers_and_service_keys(ks: Keystore) -> None:
    current = ks.controller_secrets()
    assert controller_set(current) == ks.controller_addresses(0)
    assert ks.controller_addresses(0) != ks.controller_addresses(1)
    keys = [ServiceKey.generate(alg) for alg in ("Ed25519", "P-256", "secp256k1")]
    for k in keys:
        ks.add_service_key(k, ("sig",))
    reopened = Keystore.open(ks.path).unlock(Password(PW))
    assert controller_set(reopened.controller_secrets()) == ks.controller_addresses(0)
    assert reopened.threshold == 2
    for k in keys:
        back = reopened.service_key(k.key_id)
        assert back.secret == k.secret
        assert back.public_key == k.public_key
        assert back.alg == k.alg
    infos = reopened.service_key_infos()
    assert {i.key_id for i in infos} == {k.key_id for k in keys}


def test_controller_rotation_advances_generation(ks: Keystore) -> None:
    nxt, after = ks.prepare_controller_rotation()
    assert controller_set(nxt) == ks.controller_addresses(1)
    assert after == ks.controller_addresses(2)
    ks.commit_controller_rotation()
    assert Keystore.open(ks.path).generation == 1
    assert controller_set(ks.controller_secrets()) == ks.controller_addresses(1)


def test_wrong_password_is_a_clear_error_without_the_password(ks: Keystore) -> None:
    with pytest.raises(KeystoreError) as info:
        Keystore.open(ks.path).unlock(Password("hunter2-wrong"))
    assert info.value.code == "keystore"
    assert "wrong keystore password" in info.value.message
    assert "hunter2" not in str(info.value)
    assert PW not in str(info.value)


def test_locked_keystore_refuses_to_sign(ks: Keystore) -> None:
    locked = Keystore.open(ks.path)
    with pytest.raises(KeystoreError, match="locked"):
        locked.controller_secrets()


def test_file_modes(ks: Keystore) -> None:
    ks.add_service_key(ServiceKey.generate(), ("sig",))
    assert stat.S_IMODE(ks.path.stat().st_mode) == 0o700
    files = [p for p in ks.path.rglob("*") if p.is_file()]
    assert len(files) == 1 + 6 + 1
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    for d in (p for p in ks.path.rglob("*") if p.is_dir()):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d


def test_refuses_to_overwrite(ks: Keystore) -> None:
    with pytest.raises(KeystoreError, match="already exists"):
        Keystore.create(ks.path, Password(PW))


def test_eth_keyfile_interop_both_ways(ks: Keystore) -> None:
    # eth-keyfile opens our controller keyfiles ...
    f = sorted((ks.path / "controllers" / "gen-0000").glob("*.json"))[0]
    doc = json.loads(f.read_text())
    secret = decode_keyfile_json(doc, PW.encode())
    assert secret in ks.controller_secrets()
    assert doc["address"] == controller_set([secret])[0].hex()
    # ... and we open keyfiles eth-keyfile wrote (scrypt and pbkdf2), e.g. from a wallet export.
    for kdf in ("scrypt", "pbkdf2"):
        other = create_keyfile_json(secret, PW.encode(), kdf=kdf, iterations=16 if kdf == "scrypt" else 1000)
        f.write_text(json.dumps(other))
        assert Keystore.open(ks.path).unlock(Password(PW)).controller_secrets()[0] in ks.controller_secrets()


def test_nothing_secret_in_repr_or_logs(ks: Keystore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key = ServiceKey.generate("P-256")
    ks.add_service_key(key, ("sig",))
    loaded = Keystore.open(ks.path).unlock(Password(PW))
    secrets = [s.hex() for s in loaded.controller_secrets()] + [key.secret.hex(), PW]
    texts = [repr(loaded), repr(key), str(key), repr(Password(PW)), str(Password(PW)), caplog.text]
    for text in texts:
        for s in secrets:
            assert s not in text
    # Service keyfiles name their public key but hold the private key only as ciphertext.
    raw = (ks.path / "service" / f"{key.key_id}.json").read_text()
    assert key.secret.hex() not in raw
    assert "address" not in json.loads(raw)


def test_password_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KEYREG_PASSWORD", raising=False)
    monkeypatch.delenv("KEYREG_PASSWORD_FILE", raising=False)
    with pytest.raises(KeystoreError, match="no keystore password"):
        resolve_password(prompt=False)
    monkeypatch.setenv("KEYREG_PASSWORD", "from-env")
    assert resolve_password(prompt=False).reveal() == b"from-env"
    f = tmp_path / "pw"
    f.write_text("from-file\n")
    assert resolve_password(f, prompt=False).reveal() == b"from-file"
    with pytest.raises(KeystoreError, match="cannot read password file"):
        resolve_password(tmp_path / "missing", prompt=False)


def test_kdf_setting_is_validated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KEYREG_KDF_N", "1000")
    with pytest.raises(KeystoreError, match="power of two"):
        Keystore.create(tmp_path / "k", Password(PW))
