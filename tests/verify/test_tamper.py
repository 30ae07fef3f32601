"""Every part of a bundle, tampered, is refused with a specific error (and the intact one loads)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import NOW, Scenario

from keyreg.verify import (
    AnchorMismatch,
    BundleFormatError,
    BundleRefused,
    CheckpointMismatch,
    EvidenceInvalid,
    GovernanceInvalid,
    LogInvalid,
    ProofInvalid,
    Verifier,
)

Obj = dict[str, Any]


def _flip_hex(h: str, pos: int = -1) -> str:
    chars = list(h)
    chars[pos] = "0" if chars[pos] != "0" else "1"
    return "".join(chars)


def _alice(s: Scenario, o: Obj) -> Obj:
    return s.subject_obj(o, "alice")


def _set(path: Callable[[Scenario, Obj], Obj], key: str, fn: Callable[[Any], Any]) -> Callable[[Scenario, Obj], None]:
    def mutate(s: Scenario, o: Obj) -> None:
        target = path(s, o)
        target[key] = fn(target[key])

    return mutate


def _event(i: int) -> Callable[[Scenario, Obj], Obj]:
    return lambda s, o: _alice(s, o)["events"][i]


def _evidence(which: str) -> Callable[[Scenario, Obj], Obj]:
    return lambda s, o: s.subject_obj(o, "dave")["evidence"][0][which]


def _gov(s: Scenario, o: Obj) -> Obj:
    return s.subject_obj(o, "carol")["governance"][0]


def _node_index(o: Obj) -> int:
    return len(o["proofNodes"]) // 2


CASES: list[tuple[str, Callable[[Scenario, Obj], None], type[BundleRefused], str]] = [
    # --- format
    ("format", _set(lambda s, o: o, "version", lambda v: v - 1), BundleFormatError, "version"),
    ("unknown top field", lambda s, o: o.update(extra=1), BundleFormatError, "unknown field"),
    ("unknown subject field", lambda s, o: _alice(s, o).update(extra=1), BundleFormatError, "unknown field"),
    ("not json", lambda s, o: o.clear(), BundleFormatError, "not a keyreg bundle"),
    (
        "uppercase hex",
        lambda s, o: o["proofNodes"].__setitem__(0, o["proofNodes"][0].upper().replace("0X", "0x")),
        BundleFormatError,
        "proofNodes[0]",
    ),
    (
        "odd hex",
        lambda s, o: o["proofNodes"].__setitem__(1, o["proofNodes"][1] + "0"),
        BundleFormatError,
        "proofNodes[1]",
    ),
    ("sibling length", lambda s, o: _alice(s, o)["batch"]["siblings"].append("0x00"), BundleFormatError, "32 bytes"),
    # --- checkpoint / header
    ("checkpoint hash", _set(lambda s, o: o["checkpoint"], "hash", _flip_hex), CheckpointMismatch, "pinned"),
    (
        "checkpoint number",
        _set(lambda s, o: o["checkpoint"], "number", lambda n: n + 1),
        CheckpointMismatch,
        "header says",
    ),
    (
        "checkpoint timestamp",
        _set(lambda s, o: o["checkpoint"], "timestamp", lambda n: n + 60),
        CheckpointMismatch,
        "header says",
    ),
    (
        "header byte",
        _set(lambda s, o: o["checkpoint"], "header", lambda h: _flip_hex(h, 200)),
        CheckpointMismatch,
        "hash",
    ),
    ("header truncated", _set(lambda s, o: o["checkpoint"], "header", lambda h: h[:-2]), CheckpointMismatch, "header"),
    # --- domain
    ("domain registry", _set(lambda s, o: o["domain"], "registry", _flip_hex), ProofInvalid, "registry"),
    ("domain chain id", _set(lambda s, o: o["domain"], "chainId", lambda c: c + 1), LogInvalid, "chainId"),
    # --- proofs
    (
        "proof node byte",
        lambda s, o: o["proofNodes"].__setitem__(_node_index(o), _flip_hex(o["proofNodes"][_node_index(o)], 40)),
        ProofInvalid,
        "missing",
    ),
    ("proof node removed", lambda s, o: o["proofNodes"].pop(_node_index(o)), ProofInvalid, "missing"),
    ("proof node added", lambda s, o: o["proofNodes"].append("0xc0"), ProofInvalid, "not on any proven path"),
    # --- subjects and their events
    ("subject id", _set(_alice, "subject", _flip_hex), LogInvalid, "inception"),
    ("event timestamp", _set(_event(1), "timestamp", lambda t: t + 1), LogInvalid, "replay"),
    ("event signature", _set(_event(0), "signatures", lambda sigs: [_flip_hex(sigs[0], 10)]), LogInvalid, "replay"),
    ("event key", lambda s, o: _event(0)(s, o)["keys"][0].update(publicKey="0x" + "11" * 32), LogInvalid, "replay"),
    ("event purposes", lambda s, o: _event(0)(s, o)["keys"][2].update(purposes=["sig"]), LogInvalid, "replay"),
    ("event dropped", lambda s, o: _alice(s, o)["events"].pop(0), LogInvalid, "inception"),
    ("events reordered", lambda s, o: _alice(s, o)["events"].reverse(), LogInvalid, "replay"),
    ("event seq", _set(_event(1), "seq", lambda n: n + 1), LogInvalid, "replay"),
    ("event prev", _set(_event(1), "prev", _flip_hex), LogInvalid, "replay"),
    # --- anchors
    ("anchor seq", _set(lambda s, o: _alice(s, o)["anchor"], "seq", lambda n: n + 1), AnchorMismatch, "registry holds"),
    ("anchor digest", _set(lambda s, o: _alice(s, o)["anchor"], "digest", _flip_hex), AnchorMismatch, "registry holds"),
    (
        "batch sibling",
        lambda s, o: _alice(s, o)["batch"]["siblings"].__setitem__(0, _flip_hex(_alice(s, o)["batch"]["siblings"][0])),
        ProofInvalid,
        "inclusion",
    ),
    ("batch seq", _set(lambda s, o: _alice(s, o)["batch"], "seq", lambda n: n + 1), ProofInvalid, "inclusion"),
    ("batch digest", _set(lambda s, o: _alice(s, o)["batch"], "digest", _flip_hex), ProofInvalid, "inclusion"),
    ("batch root", _set(lambda s, o: _alice(s, o)["batch"], "root", _flip_hex), ProofInvalid, "batch root"),
    ("batches list", lambda s, o: o["batches"].__setitem__(0, _flip_hex(o["batches"][0])), ProofInvalid, ""),
    # --- evidence
    ("evidence event", _set(_evidence("second"), "timestamp", lambda t: t + 1), EvidenceInvalid, "not valid"),
    (
        "evidence seq",
        _set(lambda s, o: s.subject_obj(o, "dave")["evidence"][0], "seq", lambda n: n + 1),
        EvidenceInvalid,
        "seq",
    ),
    (
        "evidence twice the same",
        lambda s, o: s.subject_obj(o, "dave")["evidence"][0].update(
            second=s.subject_obj(o, "dave")["evidence"][0]["first"]
        ),
        EvidenceInvalid,
        "same event",
    ),
    # --- governance records
    ("governance effective time", _set(_gov, "effectiveAt", lambda t: t + 1), GovernanceInvalid, "registry holds"),
    ("governance key id", _set(_gov, "keyId", lambda k: "k2"), GovernanceInvalid, ""),
    ("governance governor", _set(_gov, "governor", _flip_hex), GovernanceInvalid, "governor"),
    ("governance omitted", lambda s, o: s.subject_obj(o, "carol")["governance"].clear(), GovernanceInvalid, "omits"),
    (
        "governance invented",
        lambda s, o: s.subject_obj(o, "carol")["governance"].append({**_gov(s, o), "keyId": "k2"}),
        GovernanceInvalid,
        "k2",
    ),
    (
        "governance without governor",
        lambda s, o: _alice(s, o)["governance"].append(_gov(s, o)),
        GovernanceInvalid,
        "no governor",
    ),
]


def test_intact_bundle_loads(scenario: Scenario) -> None:
    Verifier.from_bundle(scenario.data(), scenario.block_hash, now=NOW)


@pytest.mark.parametrize(("name", "mutate", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_tampered_bundle_is_refused(
    scenario: Scenario, name: str, mutate: Callable[[Scenario, Obj], None], error: type[BundleRefused], words: str
) -> None:
    obj = scenario.copy()
    mutate(scenario, obj)
    with pytest.raises(error) as exc:
        Verifier.from_bundle(scenario.data(obj), scenario.block_hash, now=NOW)
    assert type(exc.value) is error, f"{name}: got {type(exc.value).__name__}: {exc.value.message}"
    assert words in exc.value.message, exc.value.message
    assert exc.value.details.get("part"), "every refusal names the part at fault"


def test_wrong_pinned_checkpoint(scenario: Scenario) -> None:
    with pytest.raises(CheckpointMismatch):
        Verifier.from_bundle(scenario.data(), b"\x42" * 32, now=NOW)


def test_garbage_and_gzip_bomb_are_refused(scenario: Scenario) -> None:
    with pytest.raises(BundleFormatError):
        Verifier.from_bundle(b"\x1f\x8bnot gzip", scenario.block_hash, now=NOW)
    with pytest.raises(BundleFormatError):
        Verifier.from_bundle(b"{", scenario.block_hash, now=NOW)
