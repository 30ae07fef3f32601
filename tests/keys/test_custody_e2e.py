"""Custody end to end: a real ``keyreg node run`` process initialised with the default custody
rotates its service keys unattended with the operator key alone, a service signs JWTs through the
admin API all along and PyJWT verifies each against the node's JWKS (refetched on a timer, as the
rotation e2e does); every update in the log is signed by the operator address only, and no
controller or next-generation secret is in any file of the data dir (node log included)."""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from keyreg.config import load_config
from keyreg.core.codec import event_from_obj
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import recover_address
from keyreg.keys.keystore import Keystore, Password, read_keyfile
from keyreg.keys.testing import (
    DrillNode,
    SigningService,
    TimerJWKSVerifier,
    create_subject,
    drill_env,
    init_node,
    scheduled_activations,
    wait_activation,
)

pytestmark = [pytest.mark.e2e]

INTERVAL, OVERLAP, AHEAD = 12, 6, 4


def test_operator_key_alone_rotates_unattended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYREG_KDF_N", "16")
    password = secrets.token_urlsafe(16)
    data_dir = tmp_path / "node1"
    summary = init_node(data_dir, password)
    assert summary["mode"] == "operator"
    operator = summary["operator"]["operators"][0]
    node = DrillNode(data_dir, password, drill_env(INTERVAL, OVERLAP, AHEAD)).start()
    service = None
    try:
        sid = create_subject(data_dir, password, node.api)
        assert sid == summary["subject"]
        verifier = TimerJWKSVerifier(f"{node.api}/v1/subjects/{sid}/jwks.json", 1.0)
        service = SigningService(lambda: node, verifier, 0.25)
        service.start()
        for k in (1, 2):
            wait_activation(node, sid, k, INTERVAL * 3 + 60)
        tokens = service.stop()
        service = None
        status = node.rotation()
        view = node.subject(sid)
        events = httpx.get(f"{node.api}/v1/subjects/{sid}/events", timeout=5).json()["events"]
    finally:
        if service is not None:
            service.stop()
        node.stop()
    assert tokens.rejected == [], tokens.rejected[:5]
    assert tokens.signed > 20
    assert len(tokens.kids) >= 2  # the service really switched keys
    assert status["signer"] == "operator"
    assert status["lastError"] is None
    assert len(scheduled_activations(view)) >= 2
    domain = load_config(data_dir).domain
    updates = [event_from_obj(e) for e in events if e["kind"] == "update"]
    assert len(updates) >= 2
    for signed in updates:  # one signature each, by the operator key
        digest = event_digest(domain, signed.event)
        assert ["0x" + recover_address(digest, s).hex() for s in signed.signatures] == [operator]
        for k in signed.event.publish:  # every scheduled key expires, within the operator's limit
            assert 0 < k.not_after <= signed.event.timestamp + summary["operator"]["maxValidity"]
    # after running for real, the data dir still holds no controller or next-generation secret
    held = [read_keyfile(Path(f["path"]), Password(f"{password}/{f['role']}-{f['index']}")) for f in summary["files"]]
    assert len(held) == 2
    for f in data_dir.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            for s in held:
                assert s not in data, f
                assert s.hex().encode() not in data.lower(), f
    assert not Keystore.open(data_dir / "keystore").holds_controllers
