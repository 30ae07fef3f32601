"""Issue 16 item 3 end to end: a 2-of-3 subject whose controllers are separate V3 keyfiles rotates and
revokes through signing ceremonies against a real `keyreg node run` process, one signer signing
through Foundry's `cast wallet sign --data --from-file` (the path Ledger and Trezor take via cast).

The inception's ceremony runs over the node's /v1/proposals; the rotation's and the revocation's
through the CLI: `keyreg event propose` (head from the node, its log replayed locally), `sign
--key-file`, `typed-data` for cast, `attach --signature`, `submit`.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from ceremony_support import by_address, secret
from typer.testing import CliRunner, Result

from keyreg.cli import app
from keyreg.core import builder
from keyreg.core.codec import encode_event, event_to_obj
from keyreg.core.eip712 import event_digest
from keyreg.core.hashing import address_of_private_key, sign_digest
from keyreg.core.records import PublishedKey, SignedEvent
from keyreg.p2p.testing import KeyregNode

importlib.import_module("keyreg.cli.event")  # registers `keyreg event` on the root app

ROOT = Path(__file__).resolve().parents[2]
CAST = ROOT / "contracts/node_modules/@foundry-rs/cast-linux-amd64/bin/cast"
PASSWORD = "ceremony-e2e-password-not-secret"
ED_KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")


def keyfile(path: Path, key: bytes) -> Path:
    from keyreg.keys.keystore import Password, write_keyfile

    write_keyfile(path, key, Password(PASSWORD))
    return path


def keyreg(env: dict[str, str], *args: str, ok: bool = True) -> Result:
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.stdout + result.stderr
    return result


def error_code(result: Result) -> str:
    assert result.exit_code == 2, result.stdout
    code: str = json.loads(result.stderr.strip().splitlines()[-1])["error"]["code"]
    return code


def cast_sign(typed: Path, key_file: Path, password_file: Path) -> str:
    out = subprocess.run(
        [
            str(CAST),
            "wallet",
            "sign",
            "--keystore",
            str(key_file),
            "--password-file",
            str(password_file),
            "--data",
            "--from-file",
            str(typed),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.e2e
def test_two_of_three_keyfiles_rotate_and_revoke_through_ceremonies_one_signing_with_cast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not CAST.exists():
        if os.environ.get("CI"):
            pytest.fail(f"cast missing at {CAST}: run `npm ci --prefix contracts`")
        pytest.skip(f"cast missing at {CAST}: run `npm ci --prefix contracts`")
    monkeypatch.setenv("KEYREG_KDF_N", "16")  # the keyfiles are throwaway: cheap scrypt
    current = by_address([secret(f"e2e-c{i}") for i in range(3)])
    following = by_address([secret(f"e2e-n{i}") for i in range(3)])
    after = [address_of_private_key(secret(f"e2e-a{i}")) for i in range(3)]
    files = tmp_path / "signers"
    files.mkdir()
    cur_files = [keyfile(files / f"current-{i}.json", k) for i, k in enumerate(current)]
    next_files = [keyfile(files / f"next-{i}.json", k) for i, k in enumerate(following)]
    pw = files / "password"
    pw.write_text(PASSWORD + "\n")
    env = {"KEYREG_PASSWORD_FILE": str(pw), "NO_COLOR": "1", "COLUMNS": "200", "KEYREG_KDF_N": "16"}
    cli = ["--data-dir", str(tmp_path / "cli")]

    node = KeyregNode(tmp_path / "node").start()
    try:
        # The inception, through the node's proposal API: one controller creates it with its
        # signature, another attaches; the node ingests it at the threshold.
        from keyreg.config import Config

        domain = Config().domain
        inc = builder.inception(
            _now(),
            builder.controller_set(current),
            2,
            builder.controller_set(following),
            2,
            keys=[PublishedKey("k1", "Ed25519", ED_KEY, ("sig",), 0, 0)],
        )
        digest = event_digest(domain, inc)
        subject = "0x" + digest.hex()
        body = {"event": event_to_obj(SignedEvent(inc, (), domain)), "signatures": [_sig(current[1], digest)]}
        r = node.http.post("/v1/proposals", json=body)
        assert r.status_code == 201, r.text
        r = node.http.post(f"/v1/proposals/{subject}/signatures", json={"signature": _sig(current[2], digest)})
        assert r.json()["submitted"]["status"] == "accepted", r.text
        assert node.subject(subject)["seq"] == 0

        # The rotation: proposed from the node's head, signed by the pre-committed set.
        p = tmp_path / "rotation.json"
        args = ["event", "propose", "rotation", "--subject", subject, "--node", node.api, "--out", str(p), *cli]
        args += [a for addr in builder.controller_set(following) for a in ("--controller", "0x" + addr.hex())]
        args += ["--threshold", "2", *[a for addr in after for a in ("--next-controller", "0x" + addr.hex())]]
        keyreg(env, *args)
        proposal = json.loads(p.read_text())
        assert proposal["authority"]["signers"] == ["0x" + a.hex() for a in builder.controller_set(following)]
        # a current controller's keyfile is refused before it signs; submitting early is refused
        assert error_code(keyreg(env, "event", "sign", str(p), "--key-file", str(cur_files[0]), "--json", ok=False))
        assert error_code(keyreg(env, "event", "submit", str(p), "--node", node.api, "--json", ok=False)) == (
            "incomplete_proposal"
        )
        keyreg(env, "event", "sign", str(p), "--key-file", str(next_files[0]))
        # handed to the node too, where other signers could find it (keyreg event fetch)
        shared = json.loads(keyreg(env, "event", "share", str(p), "--node", node.api, *cli, "--json").stdout)
        assert shared["signed"] == ["0x" + address_of_private_key(following[0]).hex()]
        assert node.http.get(f"/v1/proposals/{proposal['id']}").json()["missing"] == 1
        typed = tmp_path / "rotation-typed.json"
        typed.write_text(keyreg(env, "event", "typed-data", str(p)).stdout)
        signature = cast_sign(typed, next_files[2], pw)
        attached = keyreg(env, "event", "attach", str(p), "--signature", signature, "--json")
        assert json.loads(attached.stdout)["complete"] is True
        assert error_code(keyreg(env, "event", "attach", str(p), "--signature", signature, "--json", ok=False)) == (
            "proposal_complete"
        )
        submitted = json.loads(keyreg(env, "event", "submit", str(p), "--node", node.api, "--json").stdout)
        assert submitted["result"]["status"] == "accepted"
        state = node.subject(subject)
        assert state["seq"] == 1
        assert node.http.get(f"/v1/proposals/{proposal['id']}").json()["stale"] is True  # done elsewhere
        assert state["controllers"] == ["0x" + a.hex() for a in builder.controller_set(following)]

        # The revocation of k1, by the controllers now in force; cast signs first this time.
        q = tmp_path / "revocation.json"
        keyreg(env, "event", "propose", "revocation", "--subject", subject, "--node", node.api, "--out", str(q), *cli,
               "--key-id", "k1", "--effective-at", str(_now() - 60), "--reason", "ceremony")  # fmt: skip
        typed = tmp_path / "revocation-typed.json"
        typed.write_text(keyreg(env, "event", "typed-data", str(q)).stdout)
        signature = cast_sign(typed, next_files[1], pw)
        keyreg(env, "event", "attach", str(q), "--signature", signature)
        assert error_code(keyreg(env, "event", "attach", str(q), "--signature", signature, "--json", ok=False)) == (
            "duplicate_signature"
        )
        outsider = cast_sign(typed, cur_files[1], pw)  # a retired controller's signature
        assert error_code(keyreg(env, "event", "attach", str(q), "--signature", outsider, "--json", ok=False)) == (
            "unauthorized_signer"
        )
        keyreg(env, "event", "sign", str(q), "--key-file", str(next_files[0]))
        keyreg(env, "event", "submit", str(q), "--node", node.api)
        verdict = node.http.get(f"/v1/subjects/{subject}/keys/k1").json()
        assert verdict["status"] == "revoked", verdict
        assert node.subject(subject)["seq"] == 2
        # the rotation's proposal is stale now: submitting it again is refused before anything is sent
        assert error_code(keyreg(env, "event", "submit", str(p), "--node", node.api, "--json", ok=False)) == (
            "stale_proposal"
        )
    finally:
        node.stop()
    log = (tmp_path / "node" / "node.log").read_text(errors="replace")
    assert "Traceback" not in log


def _now() -> int:
    import time

    return int(time.time())


def _sig(key: bytes, digest: bytes) -> str:
    return "0x" + sign_digest(key, digest).hex()


@pytest.mark.e2e
def test_proposals_on_a_node_process_are_bounded_and_hostile_input_costs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The bounds as a node process is configured from the environment: caps per subject, junk
    dropped before a signed proposal, budgets charged before parsing, deep JSON refused."""
    monkeypatch.setenv("KEYREG_PROPOSALS_MAX_PENDING_PER_SUBJECT", "2")
    monkeypatch.setenv("KEYREG_PROPOSALS_CREATES_BURST", "5")
    monkeypatch.setenv("KEYREG_PROPOSALS_CREATES_PER_CLIENT_PER_S", "0.01")
    current = by_address([secret(f"bound-c{i}") for i in range(3)])
    node = KeyregNode(tmp_path / "node").start()
    try:
        from keyreg.config import Config

        domain = Config().domain
        inc = builder.inception(_now(), builder.controller_set(current), 2,
                                keys=[PublishedKey("k1", "Ed25519", ED_KEY, ("sig",), 0, 0)])  # fmt: skip
        assert node.submit([encode_event(builder.sign_event(domain, inc, current[:2]))])["accepted"] == 1
        subject = event_digest(domain, inc)

        def unsigned(meta: str) -> tuple[dict[str, object], bytes]:
            ev = builder.update(subject, 1, subject, _now(), metadata=meta)
            return event_to_obj(SignedEvent(ev, (), domain)), event_digest(domain, ev)

        event, digest = unsigned("signed")
        r = node.http.post("/v1/proposals", json={"event": event, "signatures": [_sig(current[0], digest)]})
        assert r.status_code == 201, r.text
        for i in range(3):  # junk for the same subject: each newcomer drops the last unsigned one
            assert node.http.post("/v1/proposals", json={"event": unsigned(f"junk{i}")[0]}).status_code == 201
        held = node.http.get("/v1/proposals", params={"subject": "0x" + subject.hex()}).json()["proposals"]
        assert [p["id"] for p in held] == ["0x" + digest.hex(), "0x" + unsigned("junk2")[1].hex()]
        deep = b'{"event":' + b"[" * 5000 + b"]" * 5000 + b"}"
        r = node.http.post("/v1/proposals", content=deep, headers={"content-type": "application/json"})
        assert (r.status_code, r.json()["code"]) == (400, "malformed")
        assert node.http.post("/v1/proposals", content=b"junk").status_code == 429  # the sixth create: over budget
        # another signer fetches it from the node, signs with a wallet, and hands it back: the node
        # completes it and ingests the event
        env = {"NO_COLOR": "1", "COLUMNS": "200"}
        cli = ["--node", node.api, "--data-dir", str(tmp_path / "cli"), "--json"]
        f = tmp_path / "fetched.json"
        fetched = json.loads(keyreg(env, "event", "fetch", "0x" + digest.hex(), "--out", str(f), *cli).stdout)
        assert fetched["missing"] == 1
        assert fetched["stale"] is False
        keyreg(env, "event", "attach", str(f), "--signature", _sig(current[2], digest))
        shared = json.loads(keyreg(env, "event", "share", str(f), *cli).stdout)
        assert shared["submitted"]["status"] == "accepted"
        assert shared["complete"] is True
        assert node.subject("0x" + subject.hex())["metadata"] == "signed"
        assert node.health()["ok"] is True
    finally:
        node.stop()
    log = (tmp_path / "node" / "node.log").read_text(errors="replace")
    assert "Traceback" not in log
    assert "ERROR" not in log
