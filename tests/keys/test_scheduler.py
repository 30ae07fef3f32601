"""The rotation scheduler against a real registry (in-memory store) and a real keystore, on a
simulated clock: the rate, the publish-ahead, the handout, twins that cannot equivocate, the
operator warning, the key file, and the overdue grace after a start."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from keyreg.api.views import key_jwk
from keyreg.config import Config, RotationConfig
from keyreg.core.eip712 import event_digest
from keyreg.keys.handout import handout_for
from keyreg.keys.keystore import Keystore, Password
from keyreg.keys.operations import Head, sign_inception, sign_update
from keyreg.keys.rotation import PolicyError
from keyreg.keys.scheduler import RotationCollector, RotationScheduler, scheduled_key
from keyreg.keys.service_keys import ServiceKey
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore

PW = "rotation test password"
T0 = 1_800_000_000  # a multiple of 60 and of 20
INTERVAL, OVERLAP, AHEAD = 60, 30, 15


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def fast_kdf(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEYREG_KDF_N", "16")


def make_config(tmp: Path, **rotation: object) -> Config:
    settings: dict[str, object] = {
        "enabled": True,
        "rotation_interval_s": INTERVAL,
        "overlap_s": OVERLAP,
        "publish_ahead_s": AHEAD,
        "overdue_grace_s": 0,
    }
    rcfg = replace(RotationConfig(), **{**settings, **rotation})
    return Config(data_dir=tmp, rotation=rcfg)


class Twin:
    """One node's registry, keystore and scheduler, sharing the simulated clock."""

    def __init__(self, config: Config, ks: Keystore, clock: Clock) -> None:
        self.config, self.ks, self.clock = config, ks, clock
        self.registry = Registry(config.domain, MemoryStore(), config.limits, clock=clock)
        self.scheduler = RotationScheduler(config, self.registry, ks, self.handout, clock=clock)

    def handout(self):  # type: ignore[no-untyped-def]
        return handout_for(self.registry, self.ks, self.config.rotation.publish_ahead_s, key_jwk)

    def events(self) -> list[bytes]:
        subject = self.ks.subject
        assert subject is not None
        return self.registry.events(subject, 0, 10_000)


def subject_with_first_key(tmp: Path, config: Config, clock: Clock) -> tuple[Keystore, bytes, ServiceKey]:
    ks = Keystore.create(tmp / "keystore", Password(PW))
    first = ServiceKey.generate("Ed25519")
    ks.add_service_key(first, ("sig",))
    signed = sign_inception(ks, config.domain, int(clock.t), [first.published(("sig",), int(clock.t))])
    subject = event_digest(config.domain, signed.event)
    ks.set_subject(subject)
    return ks, signed, first  # type: ignore[return-value]


@pytest.fixture
def one(tmp_path: Path) -> tuple[Twin, Clock]:
    clock = Clock(T0 + 7)
    config = make_config(tmp_path)
    ks, inception, _ = subject_with_first_key(tmp_path, config, clock)
    twin = Twin(config, ks, clock)
    assert twin.registry.ingest([inception])[0].status == "accepted"
    return twin, clock


def run(twin: Twin, clock: Clock, until: float, step: float = 1.0) -> list[tuple[float, str]]:
    """Advance the clock by ``step`` to ``until``, one scheduler pass per step; returns the
    (time, key id) of every change of the handed-out key."""
    changes: list[tuple[float, str]] = []
    last = None
    while clock.t < until:
        twin.scheduler.run_pass()
        kid = twin.handout().key.key_id
        if kid != last:
            changes.append((clock.t, kid))
            last = kid
        clock.t += step
    return changes


def test_one_key_per_interval_published_ahead_handed_out_at_activation(one: tuple[Twin, Clock]) -> None:
    twin, clock = one
    subject = twin.ks.subject
    assert subject is not None
    changes = run(twin, clock, T0 + 5 * INTERVAL + 1)
    state = twin.registry.state(subject)
    assert state is not None
    scheduled = sorted((r for r in state.keys.values() if r.published_seq > 0), key=lambda r: r.valid_from)
    # 5 intervals elapsed, 5 keys (the 6th one's window opens at T0 + 330)
    assert [r.valid_from for r in scheduled] == [T0 + k * INTERVAL for k in range(1, 6)]
    assert twin.scheduler.published == 5
    for r in scheduled:
        assert r.valid_from - r.published_at >= AHEAD  # as the log dates it
    # the service switched at each activation, never before
    assert [t for t, _ in changes[1:]] == [T0 + k * INTERVAL for k in range(1, 6)]
    status = twin.scheduler.status()
    assert status["keysInForce"] == 2  # the last pass ran at T0 + 300: old and new, in the overlap
    assert status["nextRotation"] == T0 + 6 * INTERVAL
    assert status["keysPublished"] == 5
    assert status["lastError"] is None
    assert status["warning"] is None


def test_twins_sign_identical_events_and_adopt_each_others_keys(tmp_path: Path) -> None:
    """Two nodes holding the same keystore, both scheduling, gossip with a delay: every second
    copy of an update is `known` (same digest), never duplicity; a failover loses nothing."""
    clock = Clock(T0 + 7)
    config_a = make_config(tmp_path / "a")
    ks_a, inception, _ = subject_with_first_key(tmp_path / "a", config_a, clock)
    shutil.copytree(tmp_path / "a" / "keystore", tmp_path / "b" / "keystore")
    ks_b = Keystore.open(tmp_path / "b" / "keystore").unlock(Password(PW))
    a, b = Twin(config_a, ks_a, clock), Twin(make_config(tmp_path / "b"), ks_b, clock)
    for t in (a, b):
        t.registry.ingest([inception])
    statuses: dict[str, int] = {}

    def gossip(src: Twin, dst: Twin) -> None:
        for result in dst.registry.ingest(src.events(), source="gossip"):
            statuses[result.status] = statuses.get(result.status, 0) + 1

    alive = {"a": True}
    while clock.t < T0 + 6 * INTERVAL:
        if alive["a"]:
            a.scheduler.run_pass()
        b.scheduler.run_pass()
        if int(clock.t) % 3 == 0 and alive["a"]:  # gossip every 3 s, both ways
            gossip(a, b)
            gossip(b, a)
        if clock.t >= T0 + 3 * INTERVAL:
            alive["a"] = False  # a is killed: b carries on alone
        clock.t += 1
    subject = ks_a.subject
    assert subject is not None
    assert subject not in a.registry.disputed
    assert subject not in b.registry.disputed
    assert statuses.get("duplicity", 0) == 0
    assert statuses.get("rejected", 0) == 0
    state_b = b.registry.state(subject)
    assert state_b is not None
    activations = sorted(r.valid_from for r in state_b.keys.values() if r.published_seq > 0)
    assert activations == [T0 + k * INTERVAL for k in range(1, 7)]
    # while both ran, each signed every update itself; the copies were byte-identical (`known`)
    assert a.scheduler.published >= 2
    assert b.scheduler.published == len(activations)
    assert statuses.get("known", 0) >= 2
    a_events = a.events()
    assert a_events == b.events()[: len(a_events)]  # the same wire bytes, signatures included
    # b hands out the current key: it holds every key of the schedule
    assert b.handout().key.key_id in state_b.keys
    assert all(ks_b.has_service_key(kid) for kid, r in state_b.keys.items() if r.valid_from >= T0 + INTERVAL)


def test_twin_adopts_a_key_it_did_not_publish(tmp_path: Path) -> None:
    clock = Clock(T0 + 7)
    config = make_config(tmp_path / "a")
    ks_a, inception, _ = subject_with_first_key(tmp_path / "a", config, clock)
    shutil.copytree(tmp_path / "a" / "keystore", tmp_path / "b" / "keystore")
    ks_b = Keystore.open(tmp_path / "b" / "keystore").unlock(Password(PW))
    a, b = Twin(config, ks_a, clock), Twin(make_config(tmp_path / "b"), ks_b, clock)
    for t in (a, b):
        t.registry.ingest([inception])
    clock.t = T0 + INTERVAL - AHEAD - 1
    a.scheduler.run_pass()
    assert a.scheduler.published == 1
    assert [r.status for r in b.registry.ingest(a.events())] == ["known", "accepted"]
    subject = ks_a.subject
    assert subject is not None
    key = scheduled_key(ks_a.rotation_seed(), subject, "Ed25519", T0 + INTERVAL)
    assert not ks_b.has_service_key(key.key_id)
    b.scheduler.run_pass()
    assert ks_b.has_service_key(key.key_id)
    assert b.scheduler.published == 0
    clock.t = T0 + INTERVAL
    assert b.handout().key.key_id == key.key_id


def test_overdue_after_a_restart_waits_for_the_grace_then_publishes_ahead(tmp_path: Path) -> None:
    clock = Clock(T0 + 7)
    config = make_config(tmp_path, overdue_grace_s=10)
    ks, inception, first = subject_with_first_key(tmp_path, config, clock)
    clock.t = T0 + INTERVAL + 5  # the node was down through the window and the boundary
    twin = Twin(config, ks, clock)
    twin.registry.ingest([inception])
    twin.scheduler.run_pass()
    assert twin.scheduler.published == 0  # within the grace: peers' events may still arrive
    clock.t += 11
    twin.scheduler.run_pass()
    assert twin.scheduler.published == 1
    subject = ks.subject
    assert subject is not None
    state = twin.registry.state(subject)
    assert state is not None
    new = max(state.keys.values(), key=lambda r: r.valid_from)
    assert new.valid_from >= clock.t + AHEAD
    # the service keeps the first key until then
    assert twin.handout().key.key_id == first.key_id
    clock.t = new.valid_from
    assert twin.handout().key.key_id == new.key.key_id


def test_clock_offset_moves_only_the_scheduler(tmp_path: Path) -> None:
    clock = Clock(T0 + 7)
    config = make_config(tmp_path, clock_offset_s=INTERVAL - AHEAD - 10)
    ks, inception, first = subject_with_first_key(tmp_path, config, clock)
    twin = Twin(config, ks, clock)
    twin.registry.ingest([inception])
    twin.scheduler.run_pass()  # the scheduler thinks it is T0 + 52: in the window for T0 + 60
    assert twin.scheduler.published == 1
    assert twin.handout().key.key_id == first.key_id  # the registry's clock still says T0 + 7


def test_warning_when_no_successor_and_the_key_ends(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock(T0 + 7)
    config = make_config(tmp_path)
    ks, inception, first = subject_with_first_key(tmp_path, config, clock)
    twin = Twin(config, ks, clock)
    twin.registry.ingest([inception])
    locked = Keystore.open(ks.path)  # the node lost its password: it cannot sign a successor
    twin.scheduler.keystore = locked
    subject = ks.subject
    assert subject is not None
    state = twin.registry.state(subject)
    assert state is not None
    retire = sign_update(
        ks, config.domain, Head(subject, 0, state.head, state.timestamp), T0 + 8, (), [(first.key_id, T0 + 20)]
    )
    clock.t = T0 + 8
    assert twin.registry.ingest([retire])[0].status == "accepted"
    twin.scheduler.run_pass()
    status = twin.scheduler.status()
    assert status["warning"] is not None
    assert "no successor" in status["warning"]
    assert "keystore is locked" in status["lastError"]
    assert status["ok"] is False
    assert any("no successor" in r.getMessage() for r in caplog.records)
    samples = {m.name: m.samples[0].value for m in RotationCollector(twin.scheduler).collect() if m.samples}
    assert samples["keyreg_rotation_no_successor_warning"] == 1
    assert samples["keyreg_rotation_errors"] >= 1
    assert samples["keyreg_rotation_last_error_timestamp_seconds"] > 0


def test_no_rotation_while_the_subject_is_disputed(tmp_path: Path) -> None:
    """Publishing on a disputed subject would add to the fork: the scheduler stops and says why."""
    clock = Clock(T0 + 7)
    config = make_config(tmp_path)
    ks, inception, _ = subject_with_first_key(tmp_path, config, clock)
    twin = Twin(config, ks, clock)
    twin.registry.ingest([inception])
    subject = ks.subject
    assert subject is not None
    state = twin.registry.state(subject)
    assert state is not None
    head = Head(subject, 0, state.head, state.timestamp)
    one = sign_update(ks, config.domain, head, T0 + 8, metadata="one")
    two = sign_update(ks, config.domain, head, T0 + 8, metadata="two")
    statuses = [r.status for r in twin.registry.ingest([one, two])]
    assert statuses == ["accepted", "duplicity"]
    assert subject in twin.registry.disputed
    clock.t = T0 + INTERVAL - AHEAD - 1  # inside the publication window
    twin.scheduler.run_pass()
    assert twin.scheduler.published == 0
    assert "disputed" in (twin.scheduler.status()["lastError"] or "")


def test_key_file_is_rewritten_atomically_when_the_key_changes(tmp_path: Path) -> None:
    clock = Clock(T0 + 7)
    config = make_config(tmp_path, key_file="service-key.json")
    ks, inception, first = subject_with_first_key(tmp_path, config, clock)
    twin = Twin(config, ks, clock)
    twin.registry.ingest([inception])
    run(twin, clock, T0 + INTERVAL - 1)
    path = tmp_path / "service-key.json"
    assert path.stat().st_mode & 0o777 == 0o600
    before = json.loads(path.read_text())
    assert before["keyId"] == first.key_id
    assert before["next"]["activeFrom"] == T0 + INTERVAL
    run(twin, clock, T0 + INTERVAL + 1)
    after = json.loads(path.read_text())
    assert after["keyId"] == before["next"]["keyId"]
    assert after["jwk"]["d"]  # the private JWK, for the service only
    assert not list(tmp_path.glob(".service-key.json.*"))  # no temporary file left behind


def test_a_policy_that_cannot_work_is_refused_at_start(tmp_path: Path) -> None:
    clock = Clock(T0)
    config = make_config(tmp_path)
    bad = replace(config, rotation=replace(config.rotation, rotation_interval_s=10, publish_ahead_s=15))
    with pytest.raises(PolicyError, match="must be longer than publish_ahead_s"):
        RotationScheduler(bad, Registry(bad.domain, MemoryStore(), bad.limits, clock=clock), None)
