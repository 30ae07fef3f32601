"""Rotation drills, for the end-to-end tests and bench/rotation_soak.py: real ``keyreg node run``
processes (SQLite, p2p gossip, the scheduler), a service that signs a JWT every ``period`` through
``POST /local/v1/sign``, and a verifier that checks each token with PyJWT's ``PyJWKClient``
against another node's JWKS, refreshing only on a timer (it never refetches on an unknown kid,
and keeps its last set while the node is down: the hardest case for a rotation).

Set ``KEYREG_KDF_N`` to a small power of two before :func:`init_node` for fast keystores. Drill
nodes use the default custody: the node holds only its operator key and rotates with it alone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ..cli.init import OffNodeCustody, init_data_dir, pending_inception
from ..core.codec import event_to_obj
from ..core.eip712 import event_digest
from .keystore import Keystore, Password
from .operations import sign_inception
from .service_keys import ServiceKey


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); TimeoutError names ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
            got = predicate()
            if got:
                return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def init_node(data_dir: Path, password: str, *, all_on_node: bool = False) -> dict[str, Any]:
    """``keyreg init`` for a drill node: by default operator custody (the node holds only its operator
    key; one controller and its next generation as keyfiles in ``<data_dir>-custody``, each under
    its own password derived from ``password``); ``all_on_node``: 1-of-1 controllers in the keystore."""
    if all_on_node:
        return init_data_dir(data_dir, Password(password))
    custody = OffNodeCustody(
        custody_dir=Path(data_dir).with_name(Path(data_dir).name + "-custody"),
        controller_passwords=[Password(password + "/controller-1")],
        next_passwords=[Password(password + "/next-1")],
    )
    return init_data_dir(data_dir, Password(password), custody=custody)


def create_subject(data_dir: Path, password: str, api: str, purposes: tuple[str, ...] = ("sig",)) -> str:
    """Create the node's subject on ``api``: the inception ``init`` had the controllers sign
    (operator custody), or, all-on-node, an inception with a first Ed25519 key signed with the
    keystore."""
    from ..config import load_config

    config = load_config(data_dir)
    ks = Keystore.open(data_dir / "keystore").unlock(Password(password))
    if not ks.holds_controllers:
        signed = pending_inception(data_dir)
        r = httpx.post(f"{api}/v1/events", json=event_to_obj(signed), timeout=30)
        r.raise_for_status()
        return "0x" + event_digest(config.domain, signed.event).hex()
    now = int(time.time())
    first = ServiceKey.generate("Ed25519")
    signed = sign_inception(ks, config.domain, now, [first.published(purposes, now)], "rotation drill")
    r = httpx.post(f"{api}/v1/events", json=event_to_obj(signed), timeout=30)
    r.raise_for_status()
    ks.add_service_key(first, purposes)
    subject = event_digest(config.domain, signed.event)
    ks.set_subject(subject)
    return "0x" + subject.hex()


class DrillNode:
    """One ``keyreg node run`` process with its keystore unlocked; settings through KEYREG_* env."""

    def __init__(self, data_dir: Path, password: str, env: dict[str, str] | None = None) -> None:
        self.data_dir, self.password = Path(data_dir), password
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.api = self.admin = self.addr = ""
        self.token = (self.data_dir / "admin.token").read_text().strip()
        self.ports: tuple[int, int, int] | None = None  # (api, admin, p2p) chosen at the first start
        self.start_seconds = 0.0

    def start(self, bootstrap: list[str] | None = None, timeout: float = 60.0, **env: str) -> DrillNode:
        runfile = self.data_dir / "node.json"
        runfile.unlink(missing_ok=True)
        self.env.update(env)
        child_env = {
            **os.environ,
            "KEYREG_PASSWORD": self.password,
            "KEYREG_CHAIN_RPC_URL": "",
            "KEYREG_P2P_BOOTSTRAP": ",".join(bootstrap or []),
            **self.env,
        }
        if self.ports:  # a restart keeps its addresses, as a real deployment's would
            child_env["KEYREG_P2P_LISTEN"] = f"/ip4/127.0.0.1/tcp/{self.ports[2]}"
        api_port, admin_port = (str(self.ports[0]), str(self.ports[1])) if self.ports else ("0", "0")
        cmd = [sys.executable, "-m", "keyreg.cli.node", "node", "run", "-d", str(self.data_dir)]
        cmd += ["--port", api_port, "--admin-port", admin_port, "--log-level", "info"]
        launched = time.monotonic()
        with open(self.data_dir / "node.log", "ab") as log:
            self.proc = subprocess.Popen(cmd, env=child_env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        proc = self.proc

        def up() -> bool:
            if proc.poll() is not None:
                tail = (self.data_dir / "node.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.data_dir.name} exited with {proc.returncode}:\n{tail}")
            info = json.loads(runfile.read_text())
            if info.get("pid") != proc.pid:
                return False
            self.api, self.admin = info["api"], info["admin"]
            return httpx.get(self.api + "/v1/health", timeout=2).status_code == 200

        wait_for(up, timeout, f"{self.data_dir.name} to serve")
        p2p = self.health()["services"].get("p2p") or {}
        self.addr = (p2p.get("addrs") or [""])[0]
        self.start_seconds = time.monotonic() - launched
        if not self.ports:
            p2p_port = int(self.addr.split("/tcp/")[1].split("/")[0])
            self.ports = (int(self.api.rsplit(":", 1)[1]), int(self.admin.rsplit(":", 1)[1]), p2p_port)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict[str, Any]:
        r = httpx.get(self.api + "/v1/health", timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def rotation(self) -> dict[str, Any]:
        return dict(self.health()["services"]["rotation"])

    def metrics(self) -> dict[str, float]:
        """The keyreg_rotation_* samples of /metrics."""
        text = httpx.get(self.api + "/metrics", timeout=5).text
        return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(keyreg_rotation_\w+) (\S+)$", text, re.M)}

    def subject(self, sid: str) -> dict[str, Any]:
        r = httpx.get(f"{self.api}/v1/subjects/{sid}", timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def duplicity(self, sid: str) -> dict[str, Any]:
        return dict(httpx.get(f"{self.api}/v1/subjects/{sid}/duplicity", timeout=5).json())

    def sign(self, claims: dict[str, Any]) -> tuple[str, str]:
        """(key id, compact JWT) from POST /local/v1/sign."""
        r = httpx.post(
            self.admin + "/local/v1/sign",
            json={"jwt": claims},
            headers={"authorization": f"Bearer {self.token}"},
            timeout=5,
        )
        r.raise_for_status()
        body = r.json()
        return str(body["keyId"]), str(body["jwt"])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


class TimerJWKSVerifier:
    """PyJWT's PyJWKClient with its JWK Set cache refreshed only when ``refresh_s`` has passed
    (``cooldown_duration`` so long that an unknown kid never triggers a refetch). When the
    endpoint is down, it keeps verifying with the last set it fetched, as a gateway would."""

    def __init__(self, url: str, refresh_s: float) -> None:
        from jwt import PyJWKClient

        self.url = url
        self.client = PyJWKClient(url, cache_jwk_set=True, lifespan=refresh_s, cooldown_duration=10**9, timeout=5)
        self.last: Any = None
        self.fetch_failures = 0

    def verify(self, token: str) -> str | None:
        """None if the token verifies, else why not."""
        import jwt

        try:
            self.last = self.client.get_jwk_set()
        except jwt.PyJWKClientConnectionError:
            self.fetch_failures += 1
        if self.last is None:
            return "no JWKS fetched yet"
        kid = jwt.get_unverified_header(token).get("kid")
        key = next((k for k in self.last.keys if k.key_id == kid), None)
        if key is None:
            return f"unknown kid {kid}"
        try:
            jwt.decode(token, key.key, algorithms=["EdDSA"])
        except jwt.InvalidTokenError as exc:
            return f"{type(exc).__name__}: {exc}"
        return None


@dataclass
class TokenLog:
    """What the signing service and the verifier saw."""

    signed: int = 0
    rejected: list[tuple[float, str, str]] = field(default_factory=list)  # (time, kid, why)
    unavailable: int = 0  # the signing node did not answer (restarting or killed)
    kids: dict[str, int] = field(default_factory=dict)


class SigningService(threading.Thread):
    """Signs a JWT every ``period`` through ``node()``'s POST /local/v1/sign and verifies it at once."""

    def __init__(self, node: Callable[[], DrillNode], verifier: TimerJWKSVerifier, period: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.node, self.verifier, self.period = node, verifier, period
        self.log = TokenLog()
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            started = time.monotonic()
            n += 1
            try:
                kid, token = self.node().sign({"n": n, "iat": int(time.time())})
            except (httpx.HTTPError, OSError):
                self.log.unavailable += 1
            else:
                self.log.signed += 1
                self.log.kids[kid] = self.log.kids.get(kid, 0) + 1
                why = self.verifier.verify(token)
                if why is not None:
                    self.log.rejected.append((time.time(), kid, why))
            self.halt.wait(max(0.0, self.period - (time.monotonic() - started)))

    def stop(self) -> TokenLog:
        self.halt.set()
        self.join(30)
        return self.log


def scheduled_activations(view: dict[str, Any]) -> list[int]:
    """Activation times of the keys the schedule published (every key after the inception's)."""
    return sorted(int(k["validFrom"]) for k in view["keys"] if k["publishedSeq"] > 0)


def activations_per_interval(activations: list[int], interval: int) -> dict[int, int]:
    out: dict[int, int] = {}
    for a in activations:
        out[a // interval] = out.get(a // interval, 0) + 1
    return out


def wait_activation(node: DrillNode, sid: str, count: int, timeout: float) -> int:
    """Wait until ``count`` scheduled keys are active (by the node's clock); returns the last activation."""

    def active() -> int | None:
        acts = [a for a in scheduled_activations(node.subject(sid)) if a <= time.time()]
        return acts[count - 1] if len(acts) >= count else None

    return int(wait_for(active, timeout, f"scheduled activation #{count}", interval=0.2))


SCHEDULER_FIELDS = ("nextRotation", "keysInForce", "keysPublished", "overduePublished", "lastError", "warning")


def drill_env(interval: int, overlap: int, ahead: int, grace: int = 2) -> dict[str, str]:
    """KEYREG_* settings of a drill node: rotation on, quick p2p repair after restarts."""
    return {
        "KEYREG_ROTATION_ENABLED": "true",
        "KEYREG_ROTATION_ROTATION_INTERVAL_S": str(interval),
        "KEYREG_ROTATION_OVERLAP_S": str(overlap),
        "KEYREG_ROTATION_PUBLISH_AHEAD_S": str(ahead),
        "KEYREG_ROTATION_OVERDUE_GRACE_S": str(grace),
        "KEYREG_P2P_SYNC_INTERVAL_S": "2",
    }


def run_drill(
    workdir: Path,
    *,
    interval: int = 20,
    overlap: int = 10,
    ahead: int = 6,
    rotations: int = 6,
    refresh_s: float = 2.0,
    period: float = 0.25,
    disruptions: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """The issue-14 scenario on two nodes; node1 schedules, the service signs on node1, the verifier
    reads node2's JWKS. With ``disruptions``: node1 restarted during the overlap after activation 2,
    node2 restarted after activation 3, and after activation 4 node1 restarted with its scheduler's
    clock stepped past the next publication (an overdue rotation). Runs until ``rotations``
    scheduled keys are active. Returns the figures (see bench/rotation_soak.py)."""
    password = secrets.token_urlsafe(16)
    dirs = [workdir / "node1", workdir / "node2"]
    for d in dirs:
        init_node(d, password)
    env = drill_env(interval, overlap, ahead)
    node2 = DrillNode(dirs[1], password, {"KEYREG_P2P_SYNC_INTERVAL_S": "2"}).start()
    node1 = DrillNode(dirs[0], password, env).start(bootstrap=[node2.addr])
    service: SigningService | None = None
    offset = 0
    try:
        wait_for(lambda: node1.health()["services"]["p2p"]["peers"] >= 1, 60, "node1 to connect to node2")
        sid = create_subject(dirs[0], password, node1.api)
        created = time.time()
        wait_for(lambda: node2.subject(sid), 30, "the inception to reach node2")
        say(f"subject {sid[:18]}... created; rotating every {interval}s (overlap {overlap}s, ahead {ahead}s)")
        verifier = TimerJWKSVerifier(f"{node2.api}/v1/subjects/{sid}/jwks.json", refresh_s)
        service = SigningService(lambda: node1, verifier, period)
        service.start()
        budget = interval * 3 + 60
        for k in range(1, rotations + 1):
            at = wait_activation(node2, sid, k, budget)
            say(f"activation {k} at {at} (t+{time.time() - created:.0f}s), {service.log.signed} tokens signed")
            if not disruptions:
                continue
            if k == 2:  # node1 restarted during the overlap
                node1.stop()
                node1.start(bootstrap=[node2.addr])
                say("  node1 restarted during the overlap")
            elif k == 3:
                node2.stop()
                node2.start(bootstrap=[node1.addr])
                say("  node2 restarted")
            elif k == 4:  # the scheduler's clock steps past the next publication (not a sleep)
                node1.stop()
                # Its first pass (about one start-up from now, as long as the last restart took)
                # should read just past the next boundary: the whole publication window missed.
                # Overdue from `boundary - ahead`, and the moved activation still in that boundary's
                # interval up to about `boundary + interval - 2 * ahead - grace`: aim between.
                aim = at + interval + max(0, (interval - 3 * ahead - 2) // 2)
                offset = int(aim - (time.time() + node1.start_seconds))
                node1.start(bootstrap=[node2.addr], KEYREG_ROTATION_CLOCK_OFFSET_S=str(offset))
                say(f"  node1 restarted with its scheduler's clock {offset}s ahead: past the next publication")
        tokens = service.stop()
        service = None
        ended = time.time()
        view = node2.subject(sid)
        acts = scheduled_activations(view)
        per = activations_per_interval(acts, interval)
        # Intervals elapsed on the scheduler's clock, counted from the interval of the first scheduled
        # activation: the inception's key was signed at `keyreg init`, before the nodes started, so
        # the boundaries passed before the scheduler ran get one overdue key between them (moved to
        # the first slot publish_ahead_s away); from then on, one key per boundary.
        first = acts[0] if acts else int(created)
        elapsed = int((ended + offset - 1) // interval - first // interval + 1)
        status = node1.rotation()
        evidence = node2.duplicity(sid)
        return {
            "rotations": rotations,
            "keys_published": len(acts),
            "intervals_elapsed": elapsed,
            "max_keys_per_interval": max(per.values()) if per else 0,
            "tokens_signed": tokens.signed,
            "tokens_rejected": len(tokens.rejected),
            "rejections": [{"at": round(t, 3), "kid": kid, "why": why} for t, kid, why in tokens.rejected[:10]],
            "sign_unavailable": tokens.unavailable,
            "keys_used": len(tokens.kids),
            "jwks_fetch_failures": verifier.fetch_failures,
            "clock_offset_s": offset,
            "duplicity_evidence": len(evidence["evidence"]),
            "disputed": bool(evidence["disputed"]),
            "scheduler": {k: status.get(k) for k in SCHEDULER_FIELDS},
            "metrics": node1.metrics(),
            "duration_s": round(ended - created, 1),
        }
    finally:
        if service is not None:
            service.stop()
        node1.stop()
        node2.stop()


def run_twin_drill(
    workdir: Path,
    *,
    interval: int = 16,
    overlap: int = 8,
    ahead: int = 6,
    before_kill: int = 2,
    after_kill: int = 2,
    refresh_s: float = 1.5,
    period: float = 0.25,
    say: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Redundancy without equivocation: two nodes holding one keystore, both schedulers on. The
    service signs on node1 (on node2 once node1 is gone), the verifier reads node2's JWKS; after
    ``before_kill`` rotations node1 is SIGKILLed and node2 carries on alone."""
    password = secrets.token_urlsafe(16)
    d1, d2 = workdir / "node1", workdir / "node2"
    init_node(d1, password)
    init_node(d2, password)
    env = drill_env(interval, overlap, ahead)
    node1 = DrillNode(d1, password, env).start()
    node2: DrillNode | None = None
    service: SigningService | None = None
    try:
        sid = create_subject(d1, password, node1.api)
        shutil.rmtree(d2 / "keystore")
        shutil.copytree(d1 / "keystore", d2 / "keystore")  # the operator copies the keystore
        node2 = DrillNode(d2, password, env).start(bootstrap=[node1.addr])
        second = node2
        wait_for(lambda: second.subject(sid), 30, "the inception to reach node2")
        wait_for(lambda: node1.health()["services"]["p2p"]["peers"] >= 1, 60, "node1 to connect to node2")
        say(f"twins up, both scheduling every {interval}s (overlap {overlap}s, ahead {ahead}s)")
        verifier = TimerJWKSVerifier(f"{node2.api}/v1/subjects/{sid}/jwks.json", refresh_s)
        service = SigningService(lambda: node1 if node1.alive else second, verifier, period)
        service.start()
        budget = interval * 3 + 60
        for k in range(1, before_kill + 1):
            say(f"activation {k} at {wait_activation(node2, sid, k, budget)}")
        node1_status = node1.rotation()
        node1_evidence = node1.duplicity(sid)
        node1.kill()
        say("node1 SIGKILLed: node2 carries on")
        for k in range(before_kill + 1, before_kill + after_kill + 1):
            say(f"activation {k} at {wait_activation(node2, sid, k, budget)}")
        tokens = service.stop()
        service = None
        view = node2.subject(sid)
        acts = scheduled_activations(view)
        evidence = node2.duplicity(sid)
        current = max(view["keys"], key=lambda k: k["validFrom"])["keyId"]
        verdict = httpx.get(f"{node2.api}/v1/subjects/{sid}/keys/{current}", timeout=5).json()
        node2_status = node2.rotation()
        return {
            "rotations": before_kill + after_kill,
            "keys_published": len(acts),
            "max_keys_per_interval": max(activations_per_interval(acts, interval).values()),
            "tokens_signed": tokens.signed,
            "tokens_rejected": len(tokens.rejected),
            "rejections": [{"at": round(t, 3), "kid": kid, "why": why} for t, kid, why in tokens.rejected[:10]],
            "sign_unavailable": tokens.unavailable,
            "duplicity_evidence": len(evidence["evidence"]) + len(node1_evidence["evidence"]),
            "disputed": bool(evidence["disputed"] or node1_evidence["disputed"] or view["disputed"]),
            "current_key_status": verdict["status"],
            "node1_published": node1_status["keysPublished"],
            "node2_published": node2_status["keysPublished"],
            "node2_last_error": node2_status["lastError"],
        }
    finally:
        if service is not None:
            service.stop()
        node1.stop()
        if node2 is not None:
            node2.stop()
