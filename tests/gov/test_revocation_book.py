"""Issue 13 review M8: the registry holds a bounded set of governance revocations per subject.

At 43df08f ``Registry.add_governance_revocations`` appended every ``GovernanceRevoked`` to a list
per subject (a linear ``in`` per insert, under the registry lock: quadratic per watcher batch),
with no cap, and every verdict of the subject walked the list. Anyone can name their own EOA as
the governor of a free subject and revoke as often as they pay ~35k gas, with any key id and ever
earlier times. Now: one entry per (subject, key id), the earliest; only the named governor's (for
a known subject); at most max_keys_per_subject + 1 key ids per subject, always keeping revocations
of published keys and of the whole subject. Verdicts are those the full list would give.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from keyreg.core import builder
from keyreg.core.eip712 import event_digest
from keyreg.core.keystate import key_verdict
from keyreg.core.limits import Limits
from keyreg.core.records import Domain, GovernanceRevocation, PublishedKey
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore
from keyreg.store.sql import SqlStore

DOMAIN = Domain(31337, bytes.fromhex("44" * 20))
GOVERNOR = bytes.fromhex("55" * 20)
OTHER = bytes.fromhex("66" * 20)
T0 = 1_700_000_000
LIMITS = Limits(max_keys_per_subject=16)
CAP = LIMITS.max_keys_per_subject + 1


def subject_with_keys(n: int = 3) -> tuple[bytes, list]:  # type: ignore[type-arg]
    secret = (99).to_bytes(32, "big")
    keys = [PublishedKey(f"k{i}", "Ed25519", bytes([i + 1]) * 32, ("sig",), T0, 0) for i in range(n)]
    ev = builder.inception(T0, builder.controller_set([secret]), 1, keys=keys, governor=GOVERNOR)
    return event_digest(DOMAIN, ev), [builder.sign_event(DOMAIN, ev, [secret])]


def rev(subject: bytes, key_id: str, at: int, pid: int = 1, governor: bytes = GOVERNOR) -> GovernanceRevocation:
    return GovernanceRevocation(subject, key_id, at, b"\x01" * 32, pid, governor, block_number=pid)


def registry(store: MemoryStore | SqlStore | None = None) -> Registry:
    return Registry(DOMAIN, store or MemoryStore(), limits=LIMITS, clock=lambda: T0 + 10_000)


def test_spam_from_the_named_governor_is_bounded() -> None:
    reg = registry()
    sid, events = subject_with_keys()
    reg.ingest(events)
    # 2,000 revocations of key ids the subject never published, in 20 watcher batches
    for batch in range(20):
        reg.add_governance_revocations(rev(sid, f"junk-{batch}-{i}", T0 + 5000, pid=i) for i in range(100))
    held = reg.governance(sid)
    assert len(held) <= CAP  # 43df08f: 2,000
    # what matters still gets in past the cap: a published key, then the whole subject
    reg.add_governance_revocations([rev(sid, "k1", T0 + 100, pid=7001), rev(sid, "", T0 + 9000, pid=7002)])
    assert {g.key_id for g in reg.governance(sid)} >= {"k1", ""}
    assert reg.verdict(sid, "k1").status == "revoked"
    assert reg.verdict(sid, "k0", at=T0 + 8000).status == "valid"
    assert reg.verdict(sid, "k0", at=T0 + 9500).status == "revoked"  # the whole subject, from T0 + 9000


def test_one_entry_per_key_id_the_earliest_and_only_the_named_governor() -> None:
    reg = registry()
    sid, events = subject_with_keys()
    reg.ingest(events)
    times = [T0 + 900 - i for i in range(200)]  # ever earlier: each a new transaction on-chain
    reg.add_governance_revocations(rev(sid, "k2", t, pid=i) for i, t in enumerate(times))
    reg.add_governance_revocations([rev(sid, "k2", T0 + 950, pid=999)])  # later: changes nothing
    reg.add_governance_revocations([rev(sid, "k0", T0 + 1, pid=5, governor=OTHER)])  # not the named governor
    [g] = reg.governance(sid)
    assert (g.key_id, g.effective_at) == ("k2", min(times))
    assert reg.verdict(sid, "k0").status == "valid"
    assert reg.verdict(sid, "k2", at=min(times)).status == "revoked"
    assert reg.verdict(sid, "k2", at=min(times) - 1).status == "valid"


def test_reload_from_the_store_applies_the_same_rules(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'node.db'}"
    reg = registry(SqlStore(url))
    sid, events = subject_with_keys()
    reg.ingest(events)
    reg.add_governance_revocations(rev(sid, f"junk-{i}", T0 + 5, pid=i) for i in range(3 * CAP))
    reg.add_governance_revocations([rev(sid, "k1", T0 + 7, pid=10_000)])
    before = sorted((g.key_id, g.effective_at) for g in reg.governance(sid))
    again = registry(SqlStore(url))
    assert sorted((g.key_id, g.effective_at) for g in again.governance(sid)) == before
    assert len(before) <= CAP + 1


KEY_IDS = st.sampled_from(["", "k0", "k1", "k2", "x1", "x2"])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(KEY_IDS, st.integers(T0, T0 + 100), st.booleans()),
        max_size=40,
    ),
    st.sampled_from(["k0", "k1", "k2", "x1"]),
    st.integers(T0 - 1, T0 + 101),
)
def test_verdicts_equal_those_of_the_full_list(revocations: list[tuple[str, int, bool]], key_id: str, at: int) -> None:
    """Under the cap, the book answers every verdict exactly as the full, unbounded list would."""
    reg = registry()
    sid, events = subject_with_keys()
    reg.ingest(events)
    everything = [rev(sid, k, t, pid=i, governor=GOVERNOR if named else OTHER)
                  for i, (k, t, named) in enumerate(revocations)]  # fmt: skip
    reg.add_governance_revocations(everything)
    state = reg.state(sid)
    full = key_verdict(state, sid, key_id, at, None, everything, False)
    got = reg.verdict(sid, key_id, at=at)
    assert got.status == full.status
    # the same time and kind of revocation (ties between equal times may name another proposal)
    assert (got.revoked and (got.revoked.by, got.revoked.since)) == (
        full.revoked and (full.revoked.by, full.revoked.since)
    )
