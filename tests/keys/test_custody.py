"""Custody (issue 16 item 2, ADR 0028 section 11): the node holds only what it must.

- ``keyreg init`` by default writes no controller or next-generation secret anywhere in the
  node's data dir (every file scanned, raw and hex), puts them in separate keyfiles under distinct
  passwords outside it, and signs the inception with an operator set for the node;
- a node in operator custody signs operator updates only, within the limits, and the real core
  accepts them as operator-signed; everything else fails with a pointer to the ceremony commands;
- the scheduler rotates unattended with the operator key alone (real registry, simulated clock);
- ``--all-on-node`` warns; a keystore of format 1 still loads (as all-on-node), with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from keyreg.api.views import key_jwk
from keyreg.cli.init import OffNodeCustody, init_data_dir, pending_inception
from keyreg.config import Config, RotationConfig
from keyreg.core import builder
from keyreg.core.hashing import address_of_private_key
from keyreg.keys.handout import handout_for
from keyreg.keys.keystore import ControllersOffNode, Keystore, KeystoreError, Password, read_keyfile
from keyreg.keys.operations import (
    Head,
    OperatorLimitError,
    sign_controller_rotation,
    sign_inception,
    sign_revocation,
    sign_update,
)
from keyreg.keys.rotation import PolicyError
from keyreg.keys.scheduler import RotationScheduler
from keyreg.keys.service_keys import ServiceKey
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

ROOT = Path(__file__).resolve().parents[2]
NODE_PW = "node password 1"
T0 = 1_800_000_000
INTERVAL, OVERLAP, AHEAD = 60, 30, 15


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYREG_KDF_N", "16")


def _custody(tmp: Path, n: int = 3, k: int = 2, **kw: object) -> OffNodeCustody:
    return OffNodeCustody(
        custody_dir=tmp / "custody",
        controllers=n,
        threshold=k,
        controller_passwords=[Password(f"controller pw {i}") for i in range(n)],
        next_passwords=[Password(f"next pw {i}") for i in range(n)],
        **kw,  # type: ignore[arg-type]
    )


def _secrets(summary: dict[str, object], role: str) -> list[bytes]:
    files = [f for f in summary["files"] if f["role"] == role]  # type: ignore[attr-defined, index]
    pw = "controller pw" if role == "controller" else "next pw"
    return [read_keyfile(Path(f["path"]), Password(f"{pw} {f['index'] - 1}")) for f in files]


def _scan_for(root: Path, needles: list[bytes]) -> list[str]:
    """Every file under ``root`` that holds a needle raw, as hex, or as 0x-hex (any case)."""
    hits = []
    for f in root.rglob("*"):
        if not f.is_file():
            continue
        data = f.read_bytes()
        low = data.lower()
        for s in needles:
            if s in data or s.hex().encode() in low:
                hits.append(str(f.relative_to(root)))
    return hits


def test_init_default_writes_no_controller_secret_into_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    summary = init_data_dir(data_dir, Password(NODE_PW), custody=_custody(tmp_path))
    assert summary["mode"] == "operator"
    ctrl, nxt = _secrets(summary, "controller"), _secrets(summary, "next")
    assert len(ctrl) == 3
    assert len(nxt) == 3
    assert builder.controller_set(ctrl) == tuple(bytes.fromhex(a[2:]) for a in summary["controllers"])
    # not one controller or next-generation secret, in any form, in any file of the data dir
    assert _scan_for(data_dir, ctrl + nxt) == []
    assert not (data_dir / "keystore" / "controllers").exists()
    ks = Keystore.open(data_dir / "keystore").unlock(Password(NODE_PW))
    assert ks.mode == "operator"
    assert ks.roles == ("operator", "service")
    op = ks.operator_secret()
    assert address_of_private_key(op) not in {address_of_private_key(s) for s in ctrl + nxt}
    # the custody dir is outside the data dir, one keyfile per person, 0600
    custody = Path(summary["custodyDir"])
    assert not custody.resolve().is_relative_to(data_dir.resolve())
    for f in summary["files"]:
        assert oct(Path(f["path"]).stat().st_mode & 0o777) == "0o600"
    # the inception is signed by 2 of the 3 controllers and names the node's operator as 1-of-1
    signed = pending_inception(data_dir)
    ops = signed.event.operators
    assert ops.operators == (address_of_private_key(op),)
    assert ops.threshold == 1
    assert ops.purposes == ("sig",)
    assert ops.max_keys == 4
    assert len(signed.signatures) == 2
    assert "0x" + bytes(signed.event.next_commitment).hex() == summary["nextCommitment"]


def test_init_refuses_shared_passwords_and_a_custody_dir_inside_the_data_dir(tmp_path: Path) -> None:
    same = OffNodeCustody(
        custody_dir=tmp_path / "c1",
        controllers=2,
        threshold=1,
        controller_passwords=[Password("pw-a"), Password("pw-a")],
        next_passwords=[Password("pw-b"), Password("pw-c")],
    )
    with pytest.raises(Exception, match="share a password"):
        init_data_dir(tmp_path / "n1", Password(NODE_PW), custody=same)
    node_pw = _custody(tmp_path, 1, 1)
    node_pw.controller_passwords = [Password(NODE_PW)]
    with pytest.raises(Exception, match="share a password"):
        init_data_dir(tmp_path / "n2", Password(NODE_PW), custody=node_pw)
    inside = _custody(tmp_path, 1, 1)
    inside.custody_dir = tmp_path / "n3" / "custody"
    with pytest.raises(Exception, match="outside the node's data dir"):
        init_data_dir(tmp_path / "n3", Password(NODE_PW), custody=inside)
    # nothing was written by the refused attempts
    assert not (tmp_path / "n1").exists()
    assert not (tmp_path / "c1").exists()
    assert not (tmp_path / "n3" / "keystore").exists()


def test_operator_node_signs_only_operator_updates_the_core_accepts(tmp_path: Path) -> None:
    clock = Clock(T0)
    config = Config(data_dir=tmp_path / "node")
    data_dir = tmp_path / "node"
    init_data_dir(data_dir, Password(NODE_PW), custody=_custody(tmp_path))
    registry = Registry(config.domain, MemoryStore(), config.limits, clock=lambda: clock.t + 10**9)
    inception = pending_inception(data_dir)
    assert registry.ingest([inception])[0].status == "accepted"
    ks = Keystore.open(data_dir / "keystore").unlock(Password(NODE_PW))
    subject = ks.subject
    assert subject is not None
    state = registry.state(subject)
    assert state is not None
    head = Head(subject, state.seq, state.head, state.timestamp)
    now = state.timestamp + 5
    policy = ks.operator_policy
    assert policy is not None
    key = ServiceKey.generate()
    signed = sign_update(ks, config.domain, head, now, [key.published(("sig",), now, now + 3600)], state=state)
    assert len(signed.signatures) == 1
    result = registry.ingest([signed])[0]
    assert result.status == "accepted", result
    assert registry.state(subject).head_authority == "operators"  # type: ignore[union-attr]

    # beyond the limits: refused by the core's rules before signing, pointing at the controllers' ceremony
    for publish, metadata in (
        ([key.published(("sig",), now, 0)], None),  # no expiry
        ([ServiceKey.generate().published(("sig",), now, now + policy.max_validity + 1)], None),
        ([ServiceKey.generate().published(("auth",), now, now + 60)], None),  # out of scope
        ([], "new metadata"),
    ):
        with pytest.raises(OperatorLimitError, match="keyreg event propose"):
            sign_update(ks, config.domain, head, now, publish, metadata=metadata, state=state)
    # controller actions: refused with the ceremony commands named
    for attempt in (
        lambda: sign_revocation(ks, config.domain, head, now, key.key_id, now),
        lambda: sign_revocation(ks, config.domain, head, now, "", now),
        lambda: sign_controller_rotation(ks, config.domain, head, now),
        lambda: ks.controller_secrets(),
    ):
        with pytest.raises(ControllersOffNode) as info:
            attempt()
        assert "keyreg event propose" in info.value.message
        assert NODE_PW not in str(info.value)
    with pytest.raises(KeystoreError, match="signed by the controllers at `keyreg init`"):
        sign_inception(ks, config.domain, now, [])


def _operator_twin(tmp: Path, clock: Clock) -> tuple[Config, Registry, Keystore, RotationScheduler]:
    settings_ = {
        "enabled": True,
        "rotation_interval_s": INTERVAL,
        "overlap_s": OVERLAP,
        "publish_ahead_s": AHEAD,
        "overdue_grace_s": 0,
    }
    config = Config(data_dir=tmp / "node", rotation=replace(RotationConfig(), **settings_))
    data_dir = tmp / "node"
    max_validity = INTERVAL + OVERLAP + 2 * AHEAD
    init_data_dir(data_dir, Password(NODE_PW), custody=_custody(tmp, 1, 1, max_validity=max_validity))
    registry = Registry(config.domain, MemoryStore(), config.limits, clock=clock)
    # the inception was signed at init (wall clock); the registry's clock starts after it
    inception = pending_inception(data_dir)
    clock.t = max(clock.t, inception.event.timestamp + 1)
    assert registry.ingest([inception])[0].status == "accepted"
    ks = Keystore.open(data_dir / "keystore").unlock(Password(NODE_PW))

    def handout():  # type: ignore[no-untyped-def]
        return handout_for(registry, ks, AHEAD, key_jwk)

    return config, registry, ks, RotationScheduler(config, registry, ks, handout, clock=clock)


def test_scheduler_rotates_unattended_with_the_operator_key_alone(tmp_path: Path) -> None:
    import time

    clock = Clock(time.time())
    _config, registry, ks, scheduler = _operator_twin(tmp_path, clock)
    subject = ks.subject
    assert subject is not None
    start = clock.t
    while clock.t < start + 6 * INTERVAL:
        scheduler.run_pass()
        clock.t += 1
    status = scheduler.status()
    assert status["signer"] == "operator"
    assert status["lastError"] is None, status
    assert status["keysPublished"] >= 5
    state = registry.state(subject)
    assert state is not None
    scheduled = [r for r in state.keys.values() if r.published_seq > 0]
    policy = ks.operator_policy
    assert policy is not None
    for r in scheduled:  # every scheduled key expires, within maxValidity of its update
        assert 0 < r.not_after <= r.published_at + policy.max_validity
    live = [r for r in state.keys.values() if r.not_after == 0 or r.not_after > clock.t]
    assert len(live) <= policy.max_keys
    assert state.head_authority == "operators"
    assert handout_for(registry, ks, AHEAD, key_jwk).key.key_id in {r.key.key_id for r in scheduled}


def test_scheduler_refuses_limits_that_cannot_carry_the_schedule(tmp_path: Path) -> None:
    clock = Clock(T0)
    config = Config(data_dir=tmp_path / "n", rotation=replace(RotationConfig(), enabled=True))
    ks = Keystore.create_operator(tmp_path / "ks", Password(NODE_PW), ("sig",), 3600, 4)
    registry = Registry(config.domain, MemoryStore(), config.limits, clock=clock)
    with pytest.raises(PolicyError, match="maxValidity"):
        RotationScheduler(config, registry, ks, None, clock=clock)
    ks2 = Keystore.create_operator(tmp_path / "ks2", Password(NODE_PW), ("auth",), 10**8, 4)
    with pytest.raises(PolicyError, match="outside the operator scope"):
        RotationScheduler(config, registry, ks2, None, clock=clock)


def test_scheduler_stops_when_the_controllers_changed_the_operator(tmp_path: Path) -> None:
    """After a recovery the subject's operator set is not this node's: it signs nothing."""
    import time

    clock = Clock(time.time())
    config, registry, ks, scheduler = _operator_twin(tmp_path, clock)
    subject = ks.subject
    assert subject is not None
    state = registry.state(subject)
    assert state is not None
    ctrl = read_keyfile(tmp_path / "custody" / "controller-1.json", Password("controller pw 0"))
    other = builder.operator_set([b"\x09" * 20], 1, ["sig"], 10**6, 4)
    ev = builder.delegation(subject, state.seq + 1, state.head, state.timestamp, other)
    assert registry.ingest([builder.sign_event(config.domain, ev, [ctrl])])[0].status == "accepted"
    scheduler.run_pass()
    assert "operator set in force is not this node's" in (scheduler.status()["lastError"] or "")
    assert scheduler.published == 0


def _v1_keystore(path: Path) -> None:
    Keystore.create(path, Password(NODE_PW), controllers=2, threshold=2)
    meta = json.loads((path / "keystore.json").read_text())
    for k in ("mode", "roles"):
        del meta[k]
    meta["version"] = 1
    (path / "keystore.json").write_text(json.dumps(meta))


def test_a_format_1_keystore_loads_as_all_on_node_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _v1_keystore(tmp_path / "ks")
    with caplog.at_level(logging.WARNING, logger="keyreg.keys"):
        ks = Keystore.open(tmp_path / "ks").unlock(Password(NODE_PW))
    assert ks.legacy
    assert ks.mode == "all-on-node"
    assert ks.holds_controllers
    assert any("format 1" in r.getMessage() and "all-on-node" in r.getMessage() for r in caplog.records)
    assert NODE_PW not in caplog.text
    assert len(ks.controller_secrets()) == 2
    ks.set_subject(b"\x05" * 32)  # the next save writes format 2, all-on-node
    meta = json.loads((tmp_path / "ks" / "keystore.json").read_text())
    assert meta["version"] == 2
    assert meta["mode"] == "all-on-node"
    assert "legacyFormat" not in meta
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="keyreg.keys"):
        assert not Keystore.open(tmp_path / "ks").legacy
    assert caplog.records == []


def _keyreg(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from keyreg.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "KEYREG_KDF_N": "16", "COLUMNS": "200", **env},
        check=False,
    )


def test_cli_init_default_and_all_on_node(tmp_path: Path) -> None:
    """The real command: default custody says where each key lives (--json too); --all-on-node warns."""
    pw = {}
    for name in ("node", "c1", "c2", "n1", "n2"):
        pw[name] = tmp_path / f"{name}.pw"
        pw[name].write_text(f"secret of {name}\n")
    r = _keyreg(
        [
            "init",
            "-d",
            "node",
            "--controllers",
            "2",
            "--threshold",
            "2",
            "--password-file",
            str(pw["node"]),
            "--controller-password-file",
            str(pw["c1"]),
            "--controller-password-file",
            str(pw["c2"]),
            "--next-password-file",
            str(pw["n1"]),
            "--next-password-file",
            str(pw["n2"]),
            "--json",
        ],
        tmp_path,
    )
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["mode"] == "operator"
    assert summary["custodyDir"] == str(tmp_path / "node-custody")
    assert [f["role"] for f in summary["files"]] == ["controller", "controller", "next", "next"]
    assert (tmp_path / "node-custody" / "README.txt").read_text().count("MOVE THIS DIRECTORY OFF THE NODE") == 1
    ctrl = [read_keyfile(Path(f["path"]), Password(f"secret of c{f['index']}")) for f in summary["files"][:2]]
    assert _scan_for(tmp_path / "node", ctrl) == []
    for p in pw.values():  # no password in the output
        assert p.read_text().strip() not in r.stdout + r.stderr
    human = _keyreg(
        [
            "init",
            "-d",
            "node2",
            "--password-file",
            str(pw["node"]),
            "--controller-password-file",
            str(pw["c1"]),
            "--next-password-file",
            str(pw["n1"]),
        ],
        tmp_path,
    )
    assert human.returncode == 0, human.stderr
    assert "NOT on this node" in human.stderr
    assert "off this machine" in human.stderr
    assert "operator key" in human.stderr
    dev = _keyreg(["init", "-d", "dev", "--all-on-node", "--password-file", str(pw["node"])], tmp_path)
    assert dev.returncode == 0, dev.stderr
    assert "warning" in dev.stderr
    assert "all-on-node" in dev.stderr
    assert "takes the subject" in dev.stderr
    assert (tmp_path / "dev" / "keystore" / "controllers" / "gen-0001").is_dir()
    # no terminal and no password files for the people's keyfiles: a clear refusal, nothing written
    refused = _keyreg(["init", "-d", "node3", "--password-file", str(pw["node"])], tmp_path)
    assert refused.returncode != 0
    assert "--controller-password-file" in refused.stderr
    assert not (tmp_path / "node3" / "keystore").exists()


def test_cli_init_with_wallet_controllers_writes_a_proposal(tmp_path: Path) -> None:
    """--controller ADDR: existing wallets; the inception waits for their signatures as a proposal."""
    pw = tmp_path / "node.pw"
    pw.write_text("node secret\n")
    wallets = [bytes([i]) * 32 for i in (7, 8, 9)]
    addrs = ["0x" + address_of_private_key(w).hex() for w in wallets]
    args = ["init", "-d", "node", "--threshold", "2", "--password-file", str(pw), "--json"]
    for a in addrs:
        args += ["--controller", a]
    args += ["--next-commitment", "0x" + "ab" * 32]
    r = _keyreg(args, tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["files"] == []
    assert summary["custodyDir"] is None
    assert summary["inception"]["signed"] is False
    with pytest.raises(Exception, match="0 of 2 controller signatures"):
        pending_inception(tmp_path / "node")
    from keyreg.ceremony.proposal import Proposal
    from keyreg.core.hashing import sign_digest

    path = tmp_path / summary["inception"]["path"]
    proposal = Proposal.from_obj(json.loads(path.read_text()))
    for w in wallets[:2]:  # two wallets sign its digest (as `cast wallet sign` would)
        proposal = proposal.attach(sign_digest(w, proposal.digest))
    path.write_text(json.dumps(proposal.to_obj()))
    signed = pending_inception(tmp_path / "node")
    assert len(signed.signatures) == 2
    assert "0x" + signed.event.operators.operators[0].hex() == summary["operator"]["operators"][0]


def test_recovery_delegation_to_a_fresh_operator_key_from_init_subject(tmp_path: Path) -> None:
    """The node is taken: the controllers delegate to a fresh operator key made by `init --subject`
    on a new data dir; the new node rotates, the stolen operator key can no longer sign anything."""
    import time

    from keyreg.keys.operations import operator_set_of

    clock = Clock(time.time())
    config, registry, old_ks, old_scheduler = _operator_twin(tmp_path, clock)
    subject = old_ks.subject
    assert subject is not None
    fresh_dir = tmp_path / "fresh"
    joined = init_data_dir(
        fresh_dir,
        Password("fresh node password"),
        custody=OffNodeCustody(subject=subject, max_validity=INTERVAL + OVERLAP + 2 * AHEAD),
    )
    assert joined["inception"] is None
    assert not (fresh_dir / "keyreg-custody").exists()
    new_ks = Keystore.open(fresh_dir / "keystore").unlock(Password("fresh node password"))
    assert new_ks.subject == subject
    policy = new_ks.operator_policy
    assert policy is not None
    state = registry.state(subject)
    assert state is not None
    ctrl = read_keyfile(tmp_path / "custody" / "controller-1.json", Password("controller pw 0"))
    ev = builder.delegation(subject, state.seq + 1, state.head, state.timestamp, operator_set_of(policy))
    assert registry.ingest([builder.sign_event(config.domain, ev, [ctrl])])[0].status == "accepted"
    # the stolen operator key: its update is refused by the core, and its scheduler stops
    state = registry.state(subject)
    assert state is not None
    head = Head(subject, state.seq, state.head, state.timestamp)
    rogue = sign_update(
        old_ks,
        config.domain,
        head,
        state.timestamp,
        [ServiceKey.generate().published(("sig",), state.timestamp, state.timestamp + 60)],
    )
    assert registry.ingest([rogue])[0].status == "rejected"
    old_scheduler.run_pass()
    assert old_scheduler.published == 0

    def handout():  # type: ignore[no-untyped-def]
        return handout_for(registry, new_ks, AHEAD, key_jwk)

    scheduler = RotationScheduler(config, registry, new_ks, handout, clock=clock)
    start = clock.t
    while clock.t < start + 3 * INTERVAL:
        scheduler.run_pass()
        clock.t += 1
    assert scheduler.status()["lastError"] is None
    assert scheduler.published >= 2
