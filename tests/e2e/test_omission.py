"""Issue 13 finding 20, played as an attacker would on a real devnet (anvil + `keyreg node run` processes).

The subject is created and anchored directly (seq 0), then `keyreg keys revoke web-1 --at -1h` (seq 1).
An exporter who drops the seq-1 event, its batch entry and the proof nodes that became unused, and
keeps the same pinned checkpoint, used to get exit 0 ("valid") from `keyreg verify`. Revocations are now
anchored directly by default (the CLI waits for the registry head), so the registry's head proves
seq 1 exists and the doctored bundle is a stale view (exit 17). The control subject is not the node's
own and its revocation is only submitted to the API, so nothing anchors it directly: the same omission
then still verifies (exit 0), which proves the tampering here is the real attack, and `basedOn` says
the verdict rests on an unproven event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner, Result

from keyreg.chain.deploy import anvil_binary, free_port
from keyreg.cli import _register, app
from keyreg.cli.common import NodeClient
from keyreg.cli.devnet import devnet_down, devnet_up
from keyreg.cli.devnet_demo import subject_view, wait_until
from keyreg.verify import ProofInvalid, Verifier

pytestmark = [pytest.mark.e2e, pytest.mark.anvil, pytest.mark.slow]

TIMEOUT = 90.0
_register()  # every topic's commands on the root app, as `keyreg` has them


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not anvil_binary().exists():
        pytest.skip(f"anvil binary missing at {anvil_binary()}: run `npm ci --prefix contracts`")
    directory = tmp_path_factory.mktemp("omission") / "devnet"
    chain = {"confirmations": 1, "poll_interval_s": 0.3, "anchor_epoch_s": 2.0, "retry_max_s": 1.0}
    try:
        yield devnet_up(directory, nodes=2, port=free_port(), block_time=1.0, chain=chain, progress=False)
    finally:
        devnet_down(directory)


def keyreg(devnet: dict[str, Any], *args: str, ok: bool = True) -> Result:
    env = {"KEYREG_PASSWORD_FILE": str(Path(devnet["dir"]) / "password"), "NO_COLOR": "1", "COLUMNS": "200"}
    result = CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.stdout + result.stderr
    return result


def verify(devnet: dict[str, Any], bundle: dict[str, Any], path: Path, sid: str, kid: str) -> dict[str, Any]:
    path.write_text(json.dumps(bundle))
    checkpoint = bundle["checkpoint"]["hash"]
    r = keyreg(devnet, "verify", sid, kid, "--bundle", str(path), "--checkpoint", checkpoint, "--json", ok=False)
    out = json.loads(r.stdout)
    assert out["exitCode"] == r.exit_code
    return dict(out)


def omit_head(bundle: dict[str, Any], sid: str) -> dict[str, Any]:
    """The attack: drop the subject's last event, its batch entry, and every proof node that became unused."""
    doctored = json.loads(json.dumps(bundle))
    [entry] = [s for s in doctored["subjects"] if s["subject"] == sid]
    entry["events"].pop()
    if entry.get("batch"):
        root = entry["batch"]["root"]
        entry["batch"] = None
        if not any((s.get("batch") or {}).get("root") == root for s in doctored["subjects"]):
            doctored["batches"].remove(root)
    checkpoint = doctored["checkpoint"]["hash"]

    def fault(candidate: dict[str, Any]) -> str | None:
        try:
            Verifier.from_bundle(json.dumps(candidate).encode(), checkpoint)
        except ProofInvalid as exc:
            return exc.message
        return None

    # Drop each proof node that no proven path needs (its removal leaves only the "unused" complaint).
    for node in list(doctored["proofNodes"]):
        doctored["proofNodes"].remove(node)
        message = fault(doctored)
        if message is None:
            return doctored
        if "not on any proven path" not in message:
            doctored["proofNodes"].append(node)  # needed: put it back
    doctored["proofNodes"].sort()
    assert fault(doctored) is None
    return doctored


def export(devnet: dict[str, Any], node: dict[str, Any], sid: str, tmp: Path) -> dict[str, Any]:
    out = tmp / f"{sid[:10]}.bundle"
    keyreg(devnet, "export", "-o", str(out), "--rpc", devnet["rpc"], "-d", node["dataDir"], "-s", sid)
    return dict(json.loads(out.read_text()))


def wait_anchored(node: dict[str, Any], sid: str, seq: int) -> None:
    """Until the node's watcher has confirmed an anchor (registry head or batch root) of ``seq``."""
    wait_until(
        lambda: ((subject_view(node["api"], sid) or {}).get("anchor") or {}).get("seq") == seq,
        TIMEOUT,
        f"seq {seq} anchored",
    )


def test_omitting_a_revocation_is_caught_when_it_is_anchored_directly(devnet: dict[str, Any], tmp_path: Path) -> None:
    node = devnet["nodes"][0]
    d = node["dataDir"]
    created = json.loads(keyreg(devnet, "subject", "create", "-d", d, "--json").stdout)
    sid = created["subject"]
    wait_until(lambda: subject_view(node["api"], sid) is not None, TIMEOUT, "the inception on the node")
    [kid] = [k["keyId"] for k in subject_view(node["api"], sid)["keys"]]  # the key the controllers signed at init
    anchored = json.loads(
        keyreg(devnet, "anchor", sid, "-d", d, "--direct", "--timeout", str(TIMEOUT), "--json").stdout
    )
    assert anchored["anchor"]["seq"] == 0
    # the node holds only its operator key: the controller revokes through a ceremony, with the keyfile
    # `keyreg devnet up` left in its custody directory
    custody = Path(devnet["dir"]) / "custody"
    password = tmp_path / "controller-1.password"
    password.write_text(json.loads((custody / "node1-devnet-only-passwords.json").read_text())["controller-1"])
    proposal = tmp_path / "revocation.json"
    keyreg(devnet, "event", "propose", "revocation", "--subject", sid, "-d", d, "--key-id", kid,
           "--effective-at", "-1h", "--reason", "compromised", "--out", str(proposal))  # fmt: skip
    keyreg(devnet, "event", "sign", str(proposal), "--key-file", str(custody / "node1" / "controller-1.json"),
           "--password-file", str(password))  # fmt: skip
    keyreg(devnet, "event", "submit", str(proposal), "-d", d)
    # the node anchors its own subject's revocation directly (ADR 0012); the CLI waits for the head
    revoked = json.loads(keyreg(devnet, "anchor", sid, "-d", d, "--direct", "--timeout", str(TIMEOUT), "--json").stdout)
    assert revoked["anchor"]["status"] == "equal"  # the registry's head is the local head
    assert revoked["anchor"]["seq"] >= 1
    wait_anchored(node, sid, 1)
    bundle = export(devnet, node, sid, tmp_path)

    honest = verify(devnet, bundle, tmp_path / "honest.json", sid, kid)
    assert honest["exitCode"] == 12, honest
    assert honest["status"] == "revoked"
    assert honest["basedOn"]["direct"]["seq"] == 1
    assert honest["basedOn"]["direct"]["how"] == "direct"
    assert honest["basedOn"]["unproven"] == []

    online = httpx.get(f"{node['api']}/v1/subjects/{sid}/keys/{kid}", timeout=10).json()
    assert online["status"] == "revoked"
    assert online["basedOn"]["direct"]["seq"] == 1  # the node's answer names the registry head it rests on
    assert online["basedOn"]["unprovenFrom"] is None
    assert online["basedOn"]["verdictUnproven"] is False

    doctored = verify(devnet, omit_head(bundle, sid), tmp_path / "doctored.json", sid, kid)
    assert doctored["exitCode"] in (17, 12), doctored
    assert doctored["exitCode"] != 0
    assert doctored["status"] == "stale-view"


def test_control_a_revocation_in_a_batch_root_only_can_still_be_omitted(devnet: dict[str, Any], tmp_path: Path) -> None:
    """A subject that is not the node's own, its revocation posted to the API: only batch roots anchor it."""
    from keyreg.config import load_config
    from keyreg.core import builder
    from keyreg.core.codec import event_to_obj
    from keyreg.core.eip712 import event_digest
    from keyreg.core.records import PublishedKey

    node = devnet["nodes"][1]
    domain = load_config(Path(node["dataDir"])).domain
    controller, nxt = [(0xC0FFEE).to_bytes(32, "big")], [(0xC0FFEF).to_bytes(32, "big")]
    now = int(time.time())
    key = PublishedKey("web-1", "Ed25519", bytes(31) + b"\x01", ("sig",), now - 7200, 0)
    inception = builder.sign_event(
        domain,
        builder.inception(
            now - 7200, builder.controller_set(controller), 1, builder.controller_set(nxt), 1, keys=[key]
        ),
        controller,
    )
    subject = event_digest(domain, inception.event)
    sid = "0x" + subject.hex()
    NodeClient(node["api"]).post_events([event_to_obj(inception)])
    keyreg(devnet, "anchor", sid, "-d", node["dataDir"], "--direct", "--timeout", str(TIMEOUT), "--json")
    revocation = builder.sign_event(
        domain, builder.revocation(subject, 1, subject, now, "web-1", now - 3600, "compromised"), controller
    )
    NodeClient(node["api"]).post_events([event_to_obj(revocation)])
    wait_anchored(node, sid, 1)  # a batch root (another node's or this one's)
    bundle = export(devnet, node, sid, tmp_path)
    honest = verify(devnet, bundle, tmp_path / "honest.json", sid, "web-1")
    assert honest["exitCode"] == 12, honest
    assert honest["basedOn"]["direct"]["seq"] == 0
    assert honest["basedOn"]["unproven"] == [1]  # the revocation rests on a batch root only
    assert honest["basedOn"]["decisive"] == [1]
    assert honest["basedOn"]["verdictUnproven"] is True
    online = httpx.get(f"{node['api']}/v1/subjects/{sid}/keys/web-1", timeout=10).json()
    assert online["basedOn"]["direct"]["seq"] == 0
    assert online["basedOn"]["unprovenFrom"] == 1
    assert online["basedOn"]["verdictUnproven"] is True
    doctored = verify(devnet, omit_head(bundle, sid), tmp_path / "doctored.json", sid, "web-1")
    assert doctored["exitCode"] == 0, doctored  # the attack of finding 20 wherever nothing anchors directly
