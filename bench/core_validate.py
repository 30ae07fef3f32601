"""Benchmark: validate signed key events from wire bytes, the node's pipeline vs an eth-account baseline.

    python bench/core_validate.py            # 10,000 events across 1,000 subjects
    python bench/core_validate.py --quick    # 2,000 events across 200 subjects

The events are generated (and signed) before any timing. What is timed is the pipeline the node
runs, :class:`keyreg.core.validator.Validator` (the registry, the offline verifier and this bench
share it): decode (strict JSON), EIP-712 digest, signature recovery with coincurve, then the rules
(``apply_event``), subject by subject in seq order but interleaved across subjects as gossip
delivers them, on one thread. Events reach a node in batches (a gossip message, a sync frame, an
API POST: 256-2,048 events), so the headline figure runs ``Validator.validate`` on batches of
``--batch`` (default 256): stage by stage, as the registry does. The one-event-at-a-time figure
(``interleaved_events_per_s``: ``Validator.decode`` + ``Validator.apply`` per event) is measured
in the same run. The baseline runs the *same* pipeline with the digest computed by eth-account's
generic ``encode_typed_data`` over the exported typed-data JSON and each signer recovered with
``Account.recover_message``: the difference is only the hashing and recovery path.
The last stdout line is one JSON object (also written to bench/results/core_validate.json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from coincurve import PrivateKey
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data
from eth_utils import keccak as eth_keccak

import keyreg.core.log as core_log
from keyreg.core import builder
from keyreg.core.codec import encode_event
from keyreg.core.eip712 import event_digest, typed_data
from keyreg.core.hashing import address_of_private_key, keccak, sign_digest
from keyreg.core.log import SubjectState
from keyreg.core.records import Domain, Event, PublishedKey
from keyreg.core.validator import Validator
from keyreg.runtime import tune_gc

DOMAIN = Domain(chain_id=31337, verifying_contract=bytes.fromhex("5fbdb2315678afecb367f032d93f642f64180aa3"))
T0 = 1_735_689_600
RESULTS = Path(__file__).resolve().parent / "results"


def _ec_point(alg: str, seed: bytes) -> bytes:
    """A real compressed point (published EC keys must be curve points, node/core/points.py)."""
    if alg == "secp256k1":
        return bytes(PrivateKey(seed).public_key.format(compressed=True))
    key = ec.derive_private_key(int.from_bytes(seed, "big") % (2**255), ec.SECP256R1()).public_key()
    return key.public_bytes(Encoding.X962, PublicFormat.CompressedPoint)


def _service_key(i: int, j: int, at: int) -> PublishedKey:
    alg = ("Ed25519", "secp256k1", "P-256")[j % 3]
    raw = keccak(b"bench-key-%d-%d" % (i, j))
    public_key = raw if alg == "Ed25519" else _ec_point(alg, raw)
    return PublishedKey(f"key-{j}", alg, public_key, ("sign", "jwt") if j % 2 else ("sign",), at, 0)


def make_subject(i: int, events_per_subject: int) -> list[bytes]:
    """One subject's log as wire bytes: inception, updates (publish / retire / metadata), a rotation."""
    secrets = [keccak(b"bench-controller-%d-%d" % (i, g)) for g in range(events_per_subject)]
    gen = 0  # controller generation: rotation reveals generation gen+1
    addr = [address_of_private_key(s) for s in secrets[:2]]
    inc = builder.inception(T0, [addr[0]], 1, [addr[1]], 1, keys=[_service_key(i, 0, T0)], metadata=f"svc-{i}")
    out = [builder.sign_event(DOMAIN, inc, [secrets[0]])]
    subject = prev = event_digest(DOMAIN, inc)
    for seq in range(1, events_per_subject):
        ts = T0 + seq * 60
        if seq == events_per_subject // 2:  # one rotation per log, revealing the pre-committed next set
            gen += 1
            nxt = address_of_private_key(secrets[gen + 1])
            event: Event = builder.rotation(subject, seq, prev, ts, [address_of_private_key(secrets[gen])], 1, [nxt])
        elif seq % 3 == 2:
            event = builder.update(subject, seq, prev, ts, retire=[(f"key-{seq - 1}", ts + 3600)])
        elif seq % 3 == 0:
            event = builder.update(subject, seq, prev, ts, metadata=f"svc-{i}-v{seq}")
        else:
            event = builder.update(subject, seq, prev, ts, publish=[_service_key(i, seq, ts)])
        out.append(builder.sign_event(DOMAIN, event, [secrets[gen]]))
        prev = event_digest(DOMAIN, event)
    return [encode_event(s) for s in out]


def make_events(subjects: int, per_subject: int) -> list[bytes]:
    """All events, interleaved across subjects (round-robin by seq), as gossip would deliver them."""
    logs = [make_subject(i, per_subject) for i in range(subjects)]
    return [log[seq] for seq in range(per_subject) for log in logs]


def validate_all(validator: Validator, wire: list[bytes]) -> int:
    """Decode and apply every event, one at a time; returns the number accepted."""
    states: dict[bytes, SubjectState] = {}
    for data in wire:
        signed = validator.decode(data)
        digest = validator.digest(signed.event)
        acc = validator.apply(states.get(validator.subject(signed, digest)), signed, None, digest)
        states[acc.subject] = acc.state
    return len(states) and len(wire)


def validate_batches(validator: Validator, wire: list[bytes], batch: int) -> int:
    """Validator.validate over consecutive batches of ``batch`` events; returns the number accepted."""
    states: dict[bytes, SubjectState] = {}
    accepted = 0
    for i in range(0, len(wire), batch):
        results, changed = validator.validate(wire[i : i + batch], states)
        states.update(changed)
        accepted += sum(1 for r in results if not isinstance(r, Exception))
    return accepted


class EthAccountValidator(Validator):
    """The same pipeline with eth-account's generic digest (the baseline; see eth_account_recovery)."""

    def __init__(self, domain: Domain, signables: dict[bytes, SignableMessage]) -> None:
        super().__init__(domain)
        self.signables = signables

    def digest(self, event: Event) -> bytes:
        signable = encode_typed_data(full_message=typed_data(self.domain, event))
        d = eth_keccak(b"\x19" + signable.version + signable.header + signable.body)
        self.signables[d] = signable
        return d


@contextlib.contextmanager
def eth_account_recovery(signables: dict[bytes, SignableMessage]) -> Iterator[None]:
    """Swap the core's signature recovery for eth-account's (baseline only)."""

    def recover(d: bytes, signature: bytes) -> bytes:
        return bytes.fromhex(Account.recover_message(signables[d], signature=signature)[2:])

    saved = core_log.recover_address
    core_log.recover_address = recover  # type: ignore[assignment]
    try:
        yield
    finally:
        core_log.recover_address = saved


def timed(validator: Validator, wire: list[bytes], batch: int = 0) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) to validate every event (batch 0: one at a time)."""
    t, c = time.perf_counter(), time.process_time()
    n = validate_batches(validator, wire, batch) if batch else validate_all(validator, wire)
    dt, dc = time.perf_counter() - t, time.process_time() - c
    assert n == len(wire)
    return dt, dc


def recover_limit(samples: int = 2000) -> tuple[float, float]:
    """coincurve's public-key recovery alone, per wall second and per CPU second (the ceiling)."""
    from coincurve import PublicKey

    digests = [keccak(b"calibrate-%d" % i) for i in range(samples)]
    secret = keccak(b"calibrate")
    sigs = [sign_digest(secret, d) for d in digests]
    t, c = time.perf_counter(), time.process_time()
    for d, s in zip(digests, sigs, strict=True):
        PublicKey.from_signature_and_message(s[:64] + bytes((s[64] - 27,)), d, hasher=None)
    return samples / (time.perf_counter() - t), samples / (time.process_time() - c)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 events across 200 subjects")
    parser.add_argument("--runs", type=int, default=3, help="pipeline runs (the best is reported)")
    parser.add_argument("--batch", type=int, default=256, help="events per Validator.validate call (default 256)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/core_validate.json")
    args = parser.parse_args(argv)
    subjects, per_subject = (200, 10) if args.quick else (1000, 10)

    t = time.perf_counter()
    wire = make_events(subjects, per_subject)
    print(
        f"generated {len(wire):,} signed events across {subjects:,} subjects in {time.perf_counter() - t:.1f}s "
        f"({sum(map(len, wire)) / len(wire):.0f} bytes each on average)",
        flush=True,
    )

    validator = Validator(DOMAIN)
    validate_all(validator, wire[: len(wire) // 10])  # warm up (imports, allocator)
    # As a node process does once it has loaded (node/runtime.py): what is alive now (here the
    # imports and the inputs) is frozen out of the cyclic GC's scans, young collections run less
    # often. Without it, full collections rescanning eth-account's and web3's import-time objects
    # cost ~2.5% of the timed runs. The baseline runs under the same settings.
    tune_gc()
    load_before = os.getloadavg()[0]
    runs, limits, single = [], [], []
    for _ in range(max(1, args.runs)):
        limits.append(recover_limit())  # measured next to each run: the machine may be shared
        runs.append(timed(validator, wire, args.batch))
        single.append(timed(validator, wire))
    walls = [w for w, _ in runs]
    fast = len(wire) / min(walls)
    fast_cpu = len(wire) / min(c for _, c in runs)
    interleaved = len(wire) / min(w for w, _ in single)
    interleaved_cpu = len(wire) / min(c for _, c in single)
    print(
        f"pipeline, batches of {args.batch}: {fast:,.0f} events/s (best of {len(runs)}; "
        f"median {len(wire) / statistics.median(walls):,.0f}; {fast_cpu:,.0f} per CPU-second)",
        flush=True,
    )
    print(
        f"pipeline, one event at a time: {interleaved:,.0f} events/s ({interleaved_cpu:,.0f} per CPU-second)",
        flush=True,
    )
    signables: dict[bytes, SignableMessage] = {}
    with eth_account_recovery(signables):
        base_dt, base_cpu = timed(EthAccountValidator(DOMAIN, signables), wire, args.batch)
    baseline = len(wire) / base_dt
    print(f"eth-account baseline: {baseline:,.0f} events/s")
    ratio = fast / baseline
    print(f"ratio: {ratio:.1f}x (target: >= 8,000 events/s and >= 5x)")
    # Share of the coincurve ceiling, per run against the recovery rate measured just before it.
    fractions = [(len(wire) / w) / lw for (w, _), (lw, _) in zip(runs, limits, strict=True)]
    cpu_fractions = [(len(wire) / c) / lc for (_, c), (_, lc) in zip(runs, limits, strict=True)]
    limit_wall = max(lw for lw, _ in limits)
    print(
        f"coincurve recovery alone: {limit_wall:,.0f}/s (best); the pipeline runs at {max(fractions):.0%} of it "
        f"({max(cpu_fractions):.0%} in CPU time; target >= 60%)"
    )
    load = os.getloadavg()[0]
    if max(load, load_before) > 1.5:
        print(f"note: load average {max(load, load_before):.1f} on {os.cpu_count()} CPUs: the machine was shared")

    result: dict[str, Any] = {
        "bench": "core_validate",
        "events_per_s": round(fast),
        "baseline_events_per_s": round(baseline),
        "ratio": round(ratio, 2),
        "cpu_events_per_s": round(fast_cpu),
        "interleaved_events_per_s": round(interleaved),
        "interleaved_cpu_events_per_s": round(interleaved_cpu),
        "batch": args.batch,
        "cpu_ratio": round(fast_cpu / (len(wire) / base_cpu), 2),
        "coincurve_recover_per_s": round(limit_wall),
        "fraction_of_recover_limit": round(max(fractions), 3),
        "cpu_fraction_of_recover_limit": round(max(cpu_fractions), 3),
        "baseline_cpu_events_per_s": round(len(wire) / base_cpu),
        "events": len(wire),
        "subjects": subjects,
        "signatures_per_event": 1,
        "runs": len(runs),
        "quick": args.quick,
        "meets_target": fast >= 8000 and ratio >= 5 and max(fractions) >= 0.6,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "cpu_count": os.cpu_count(),
        "load_average": round(max(load, load_before), 2),
        "machine": platform.machine(),
        "timestamp": int(time.time()),
    }
    if not args.no_save:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "core_validate.json").write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
