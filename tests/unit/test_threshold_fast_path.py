"""apply_event's threshold check, for every small signer set, against _require_threshold."""

from __future__ import annotations

import itertools

import pytest

from keyreg.core import builder
from keyreg.core.eip712 import event_digest
from keyreg.core.errors import RuleViolation
from keyreg.core.log import _require_threshold, apply_event
from keyreg.core.records import Domain, SignedEvent

DOMAIN = Domain(31337, b"\x11" * 20)
ADDRS = [bytes([i]) * 20 for i in (1, 2, 3, 9)]  # 9 never a controller below


def _expected(signers: tuple[bytes, ...], controllers: tuple[bytes, ...], threshold: int) -> tuple[type, str] | None:
    try:
        _require_threshold(signers, controllers, threshold)
    except RuleViolation as exc:
        return type(exc), str(exc)
    return None


def _outcome(fn: object) -> tuple[type, str] | None:
    try:
        fn()  # type: ignore[operator]
    except RuleViolation as exc:
        return type(exc), str(exc)
    return None


CASES = [
    (ctl, thr, signers)
    for n in (1, 2, 3)
    for ctl in [tuple(ADDRS[:n])]
    for thr in range(1, n + 1)
    for k in (0, 1, 2)
    for signers in itertools.permutations(ADDRS, k)
]


@pytest.mark.parametrize(("controllers", "threshold", "signers"), CASES)
def test_inception_and_update_thresholds(
    controllers: tuple[bytes, ...], threshold: int, signers: tuple[bytes, ...]
) -> None:
    inc = builder.inception(1000, controllers, threshold, metadata="x")
    digest = event_digest(DOMAIN, inc)
    signed = SignedEvent(inc, (), DOMAIN)  # signatures unused: the signers come precomputed
    want = _expected(signers, controllers, threshold)
    got = _outcome(lambda: apply_event(None, signed, DOMAIN, precomputed=(digest, signers)))
    assert got == want

    # The same signers on an update of a subject incepted with these controllers.
    state = apply_event(None, signed, DOMAIN, precomputed=(digest, controllers)).state
    up = builder.update(state.subject, 1, state.head, 1001, metadata="y")
    signed_up = SignedEvent(up, (), DOMAIN)
    got = _outcome(lambda: apply_event(state, signed_up, DOMAIN, precomputed=(event_digest(DOMAIN, up), signers)))
    assert got == want
