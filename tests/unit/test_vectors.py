"""Replay every checked-in test vector through the core; the vectors are the normative examples."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from keyreg.core.codec import decode_event, dumps_canonical, encode_event
from keyreg.core.eip712 import TYPE_HASH, domain_separator, encode_type, event_digest, hash_struct, typed_data
from keyreg.core.errors import ALL_RULE_CODES, KeyregError
from keyreg.core.log import apply_event, replay

VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def load_generator() -> ModuleType:
    """tests/vectors/generate.py as a module (its helpers are shared with the tests)."""
    name = "keyreg_vector_generator"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, VECTORS / "generate.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


gen = load_generator()


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text())
    assert data["format"] == 2
    return data


VALID = _load("valid_logs.json")["logs"]
INVALID = _load("invalid.json")["cases"]
TYPED = _load("typed_data.json")


@pytest.mark.parametrize("log", VALID, ids=[v["name"] for v in VALID])
def test_valid_log_replays(log: dict[str, Any]) -> None:
    domain = gen.domain_from_obj(log["domain"])
    wire = [dumps_canonical(obj) for obj in log["events"]]
    events = [decode_event(b) for b in wire]
    assert [encode_event(e) for e in events] == wire  # the wire form round-trips byte for byte
    accepted = replay(events, domain)
    assert ["0x" + a.digest.hex() for a in accepted] == log["digests"]
    assert [["0x" + s.hex() for s in a.signers] for a in accepted] == log["signers"]
    assert [a.authority for a in accepted] == log["authorities"]
    assert "0x" + accepted[0].digest.hex() == log["subject"]  # subject id = digest of the inception
    assert all("0x" + a.subject.hex() == log["subject"] for a in accepted)
    for a, ev in zip(accepted[1:], events[1:], strict=True):
        assert ev.event.prev == replay([e for e in events if e.event.seq < ev.event.seq], domain)[-1].digest
        assert a.state.seq == ev.event.seq
    state = accepted[-1].state
    assert gen.state_summary(state) == log["final"]
    governance = [gen.governance_from_obj(g) for g in log["governance"]]
    for v in log["verdicts"]:
        got = gen.verdict_obj(state, v["keyId"], v["at"], v["purpose"], v["status"], governance)
        assert got == v


@pytest.mark.parametrize("case", INVALID, ids=[c["name"] for c in INVALID])
def test_invalid_case_is_rejected_with_its_code(case: dict[str, Any]) -> None:
    domain = gen.domain_from_obj(case["domain"])
    prior = replay([decode_event(dumps_canonical(o)) for o in case["prior"]], domain)
    state = prior[-1].state if prior else None
    data = case["eventRaw"].encode() if "eventRaw" in case else dumps_canonical(case["event"])
    assert case["code"] in ALL_RULE_CODES
    with pytest.raises(KeyregError) as info:
        apply_event(state, decode_event(data), domain, now=case["now"])
    assert info.value.code == case["code"], str(info.value)


def test_invalid_cases_cover_the_brief() -> None:
    names = {c["name"] for c in INVALID}
    required = {
        "wrong-signer",
        "below-threshold",
        "tampered-field",
        "bad-prev",
        "gap",
        "replay-head",
        "replay-old",
        "wrong-chain-id",
        "wrong-contract",
        "commitment-mismatch",
        "unknown-field",
        "duplicate-json-key",
        "oversized-event",
        "high-s-signature",
        "unsorted-signatures",
        "retire-unknown-key",
        "republished-key-id",
        "event-after-subject-revocation",
        "timestamp-backwards",
        # protocol 2 (docs/adr/0028-protocol-v2-operators-and-custody.md)
        "operator-sets-metadata",
        "operator-purpose-outside-scope",
        "operator-no-expiry",
        "operator-beyond-max-validity",
        "operator-over-max-keys",
        "operator-retires-out-of-scope-key",
        "operator-signs-key-revocation",
        "operator-signs-subject-revocation",
        "operator-signs-rotation",
        "operator-signs-delegation",
        "operator-below-threshold",
        "inception-operators-unsorted",
        "operator-set-unknown-field",
    }
    assert required <= names
    assert {c["code"] for c in INVALID} == set(ALL_RULE_CODES) - {"duplicity", "rule_violation"}


@pytest.mark.parametrize("vector", TYPED["events"], ids=[f"{v['kind']}-{i}" for i, v in enumerate(TYPED["events"])])
def test_typed_data_vector(vector: dict[str, Any]) -> None:
    signed = decode_event(dumps_canonical(vector["wire"]))
    assert signed.event.kind == vector["kind"]
    assert typed_data(signed.domain, signed.event) == vector["typedData"]
    assert encode_type(vector["typedData"]["primaryType"]) == vector["encodeType"]
    assert "0x" + domain_separator(signed.domain).hex() == vector["domainSeparator"]
    assert "0x" + hash_struct(signed.event).hex() == vector["hashStruct"]
    assert "0x" + event_digest(signed.domain, signed.event).hex() == vector["digest"]


def test_typed_data_vectors_form_a_valid_log() -> None:
    events = [decode_event(dumps_canonical(v["wire"])) for v in TYPED["events"]]
    kinds = ["inception", "update", "rotation", "revocation", "delegation", "update"]
    assert [e.event.kind for e in events] == kinds
    accepted = replay(events, events[0].domain)
    assert [a.authority for a in accepted] == [v["authority"] for v in TYPED["events"]]
    assert accepted[-1].authority == "operators"
    assert {k: "0x" + v.hex() for k, v in TYPE_HASH.items()} == TYPED["typeHashes"]


def test_generator_check_passes() -> None:
    """The checked-in files are exactly what the generator writes (CI relies on this)."""
    proc = subprocess.run(
        [sys.executable, str(VECTORS / "generate.py"), "--check"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr


def test_generator_check_detects_a_stale_file(tmp_path: Path) -> None:
    for name in ("valid_logs.json", "invalid.json", "typed_data.json"):
        (tmp_path / name).write_text((VECTORS / name).read_text())
    assert gen.main(["--check", "--out", str(tmp_path)]) == 0
    (tmp_path / "typed_data.json").write_text("{}\n")
    assert gen.main(["--check", "--out", str(tmp_path)]) == 1
    assert (tmp_path / "typed_data.json").read_text() == "{}\n"  # --check writes nothing
