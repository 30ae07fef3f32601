"""Issue 13 rule 4 end to end: a real `keyreg node run` whose chain RPC endpoint is hostile.

The endpoint (tests/e2e/hostile_rpc.py, a real HTTP server on loopback) serves well-formed ABI logs
with values no store column holds (``seq = 2**64 - 1``). On 287c9cc the failure escaped the chain
service and cancelled the node's nursery: the process exited and stopped answering; at 43df08f the
supervisor restarted the service, which failed again on the same block forever (review M2). Now the
watcher skips those logs and shows them in /v1/health. The chain service is made to fail by a
local fault instead (its cursor file's path is a directory, so saving it raises): the node keeps
answering key-verdict queries and accepting events throughout, /v1/health and /metrics show the
failure, each failure is logged once with its cause and no RPC secret, and SIGTERM still stops
the node promptly. Every wait polls a condition with a deadline.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hostile_rpc import serve

from keyreg.cli.demo import spawn_node
from keyreg.cli.init import init_data_dir
from keyreg.config import load_config
from keyreg.core import builder
from keyreg.core.codec import event_to_obj
from keyreg.core.eip712 import event_digest
from keyreg.keys.keystore import Password
from keyreg.keys.service_keys import ServiceKey

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SECRET_PATH = "/v3/SECRETAPIKEY"  # what an operator's RPC URL often carries: must never be shown


def wait_until(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)  # polling a condition with a deadline


@pytest.fixture
def hostile_rpc() -> Iterator[str]:
    server = serve()
    try:
        yield f"http://operator:hunter2@127.0.0.1:{server.server_address[1]}{SECRET_PATH}"
    finally:
        server.shutdown()
        server.server_close()


def _subject(domain: Any) -> tuple[dict[str, Any], str]:
    now = int(time.time())
    secret = (7).to_bytes(32, "big")
    key = ServiceKey.generate("Ed25519", "web-1")
    ev = builder.inception(now, builder.controller_set([secret]), 1, keys=[key.published(("sig",), now)])
    signed = builder.sign_event(domain, ev, [secret])
    return event_to_obj(signed), f"/v1/subjects/0x{event_digest(domain, ev).hex()}/keys/web-1"


def test_node_survives_a_failing_chain_service(tmp_path: Path, hostile_rpc: str) -> None:
    os.environ["KEYREG_KDF_N"] = "1024"
    data_dir = tmp_path / "node"
    init_data_dir(data_dir, Password("pw"))
    (data_dir / "chain" / "watcher.json").mkdir(parents=True)  # the fault: the cursor cannot be saved
    env = {
        "KEYREG_CHAIN_RPC_URL": hostile_rpc,
        "KEYREG_CHAIN_CONFIRMATIONS": "1",
        "KEYREG_CHAIN_POLL_INTERVAL_S": "0.2",
        "KEYREG_P2P_ENABLED": "false",
        "KEYREG_SUPERVISOR_RESTART_INITIAL_S": "0.2",
        "KEYREG_SUPERVISOR_RESTART_MAX_S": "0.8",
        "KEYREG_API_RATE_LIMIT_PER_S": "0",  # the test polls as fast as the node answers
    }
    event, verdict_path = _subject(load_config(data_dir).domain)
    with spawn_node(data_dir, env, args=("--no-keystore",)) as node, httpx.Client(base_url=node.api, timeout=10) as c:
        assert c.post("/v1/events", json=event).status_code == 200

        def chain_failed_twice() -> dict[str, Any] | None:
            assert node.proc.poll() is None, "the node process exited"
            chain = c.get("/v1/health").json()["services"]["chain"]
            sup = chain["supervisor"]
            return chain if sup["failures"] >= 2 else None  # a restart's rescan fails again

        # the node answers queries all along, while the chain service fails and is restarted
        deadline = time.monotonic() + 60
        answers = 0
        chain = None
        while chain is None:
            assert time.monotonic() < deadline, "the chain service was never seen failing twice"
            r = c.get(verdict_path)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "valid", r.text
            answers += 1
            chain = chain_failed_twice()
        assert answers >= 1
        sup = chain["supervisor"]
        assert sup["restarts"] >= 1
        assert sup["last_error"].startswith("IsADirectoryError: ")
        # the hostile values were skipped before the store, with their causes (review M2)
        watcher = chain["watcher"]
        assert watcher["skipped_logs"] >= 1
        assert any("out of range" in s["error"] for s in watcher["skipped"])
        assert "(at node/" in sup["last_error"]  # where in our code it was raised
        assert chain["ok"] is False or sup["state"] == "running"
        # a new event is still accepted and served while the chain service keeps failing
        later, later_path = _subject(load_config(data_dir).domain)
        assert c.post("/v1/events", json=later).status_code in (200, 202)
        assert c.get(later_path).status_code == 200
        metrics = c.get("/metrics").text
        failures = [
            ln for ln in metrics.splitlines() if ln.startswith('keyreg_service_failures_total{service="chain"}')
        ]
        assert failures
        assert float(failures[0].split()[-1]) >= 2
        health_text = c.get("/v1/health").text
        for secret in ("hunter2", "SECRETAPIKEY"):
            assert secret not in health_text
            assert secret not in metrics

        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGTERM)
        assert node.proc.wait(15) == 0
        assert time.monotonic() - t0 < 10
    log = node.log_path.read_text(errors="replace")
    logged = [ln for ln in log.splitlines() if "service chain failed: IsADirectoryError" in ln]
    assert len(logged) >= 2  # once per failure, with its cause
    assert all("Traceback" not in ln for ln in logged)
    assert "hunter2" not in log
    assert "SECRETAPIKEY" not in log
