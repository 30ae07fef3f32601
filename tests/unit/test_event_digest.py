"""event_digest and Validator.digest (its domain's prefix made once): right for every domain, in any
order, on any thread, with one Validator shared by the threads of its network."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from keyreg.core.codec import event_from_obj
from keyreg.core.eip712 import domain_separator, event_digest, hash_struct
from keyreg.core.hashing import keccak
from keyreg.core.records import Domain
from keyreg.core.validator import Validator

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
SIGNED = [
    event_from_obj(e) for log in json.loads((VECTORS / "valid_logs.json").read_text())["logs"] for e in log["events"]
]
DOMAINS = [
    Domain(1, b"\x01" * 20),
    Domain(31337, b"\x02" * 20),
    Domain(1, b"\x01" * 20, name="other"),
    Domain(2**256 - 1, b""),
]


def _reference(domain: Domain, signed_index: int) -> bytes:
    return keccak(b"\x19\x01" + domain_separator(domain) + hash_struct(SIGNED[signed_index].event))


def test_digest_is_the_eip712_formula_across_domain_switches() -> None:
    for round_ in range(3):
        for d in [*DOMAINS, *reversed(DOMAINS)]:
            for i, s in enumerate(SIGNED):
                assert event_digest(d, s.event) == _reference(d, i), (round_, d)
        equal_not_same = Domain(DOMAINS[0].chain_id, DOMAINS[0].verifying_contract)
        assert event_digest(equal_not_same, SIGNED[0].event) == _reference(DOMAINS[0], 0)


def test_digest_on_threads_switching_domains() -> None:
    errors: list[str] = []

    validators = {d: Validator(d) for d in DOMAINS}

    def work(d: Domain) -> None:
        for _ in range(50):
            for i, s in enumerate(SIGNED[:8]):
                if event_digest(d, s.event) != _reference(d, i) or validators[d].digest(s.event) != _reference(d, i):
                    errors.append(repr(d))

    threads = [threading.Thread(target=work, args=(d,)) for d in DOMAINS * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
