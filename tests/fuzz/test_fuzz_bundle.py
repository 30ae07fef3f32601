"""Fuzz bundle loading (``keyreg verify --bundle``, ``Verifier.from_bundle``).

A bundle comes from whoever exported it. Whatever its bytes (JSON or gzip, mutated at the byte or
the object level), loading gives a Verifier or a ``KeyregError`` (``BundleRefused`` and its kinds,
``StaleView`` ...), never another exception. Bundles are made by the simulated registry
(node/verify/testing.py): real signatures, real trie and Merkle proofs.
"""

from __future__ import annotations

import contextlib
import gzip
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from fuzzing import examples, mutated_bytes, mutated_object
from hypothesis import given
from hypothesis import strategies as st

from keyreg.core.errors import KeyregError
from keyreg.core.merkle import SparseMerkleTree
from keyreg.verify import Verifier
from keyreg.verify.bundle import bundle_to_obj, decode_envelope, decode_subject, encode_bundle
from keyreg.verify.testing import SimulatedRegistry


def _helpers() -> Any:
    if "verify_helpers" in sys.modules:  # imported already by tests/verify in this session
        return sys.modules["verify_helpers"]
    path = Path(__file__).resolve().parents[1] / "verify" / "verify_helpers.py"
    spec = importlib.util.spec_from_file_location("verify_helpers", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["verify_helpers"] = module
    spec.loader.exec_module(module)
    return module


def _bundle() -> tuple[bytes, bytes]:
    h = _helpers()
    t0 = h.T0
    sim = SimulatedRegistry(h.DOMAIN, number=900, timestamp=t0 + 9000)
    alice = h.make_actor("fuzz-alice", [h.service_key("k1"), h.service_key("k2", alg="P-256")])
    alice.update(t0 + 100, [h.service_key("k3", alg="secp256k1")], retire=[("k1", t0 + 3600)])
    bob = h.make_actor("fuzz-bob", [h.service_key("k1", label="fuzz-bob-k1")])
    bob.revoke(t0 + 400, "k1", t0 + 500)
    for actor in (alice, bob):
        sim.add_subject(actor.events)
    sim.anchor_direct(alice.subject, *alice.head)
    tree = SparseMerkleTree()
    tree.set(bob.subject, *bob.head)
    sim.anchor_batch(tree, block=880)
    bundle, block_hash = sim.export()
    return encode_bundle(bundle), block_hash


DATA, BLOCK = _bundle()
NOW = _helpers().T0 + 10_000
OBJ = json.loads(DATA)
INPUTS = (
    mutated_bytes([DATA])
    | mutated_object([OBJ]).map(lambda o: json.dumps(o, separators=(",", ":")).encode())
    | mutated_object([OBJ["subjects"][0], OBJ["subjects"][1]]).map(
        lambda s: json.dumps({**OBJ, "subjects": [s]}, separators=(",", ":")).encode()
    )
    | st.binary(max_size=256)
)


def _load(data: bytes) -> None:
    with contextlib.suppress(KeyregError):
        Verifier.from_bundle(data, BLOCK, now=NOW, workers=1)


def test_the_seed_bundle_loads() -> None:
    verifier = Verifier.from_bundle(DATA, BLOCK, now=NOW, workers=1)
    assert len(verifier.subjects) == 2


@examples(200)
@given(INPUTS, st.booleans())
def test_any_bundle_loads_or_is_refused(data: bytes, compress: bool) -> None:
    _load(gzip.compress(data, 1) if compress else data)


@examples(300)
@given(mutated_object([OBJ["subjects"][0], OBJ["subjects"][1]]), st.integers(0, 3))
def test_decode_subject_decodes_or_refuses(obj: Any, index: int) -> None:
    with contextlib.suppress(KeyregError):
        decode_subject(obj, index)


@examples(200)
@given(mutated_object([OBJ]).map(lambda o: json.dumps(o).encode()))
def test_decode_envelope_decodes_or_refuses(data: bytes) -> None:
    with contextlib.suppress(KeyregError):
        decode_envelope(data)


def test_the_seed_round_trips() -> None:
    assert bundle_to_obj(Verifier.from_bundle(DATA, BLOCK, now=NOW, workers=1).bundle) == OBJ
