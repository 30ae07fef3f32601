"""Benchmark: key-verdict queries against a real node process, load from a separate process.

    python bench/api_query.py [--quick] [--subjects 1000] [--concurrency 32] [--duration 15]

Starts ``keyreg node run`` (SQLite, temp data dir, rate limit off) on a free loopback port,
pre-loads N subjects through POST /v1/events, then runs a load generator in a SEPARATE process:
C keep-alive HTTP/1.1 connections (trio, a minimal client so the generator is not the
bottleneck) issuing GET /v1/subjects/{id}/keys/{kid} for random subjects, bounded by a duration
and a request count. Prints human-readable lines, then one JSON line (the last line of stdout)
with p50_ms, p99_ms and requests_per_s.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# ----------------------------------------------------------------------------- load generator


def _worker(url: str, targets: list[str], concurrency: int, duration: float, warmup: float, max_requests: int) -> None:
    import trio

    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    errors = 0
    count = 0
    deadline = 0.0
    measuring = False

    async def conn(i: int) -> None:
        nonlocal errors, count
        rnd = random.Random(i)
        stream = await trio.open_tcp_stream(host, int(port))
        buf = b""
        while time.perf_counter() < deadline and count < max_requests:
            path = rnd.choice(targets)
            req = f"GET {path} HTTP/1.1\r\nhost: {host}\r\n\r\n".encode()
            t0 = time.perf_counter()
            await stream.send_all(req)
            while b"\r\n\r\n" not in buf:
                chunk = await stream.receive_some(65536)
                if not chunk:
                    raise RuntimeError("server closed the connection")
                buf += chunk
            head, _, buf = buf.partition(b"\r\n\r\n")
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"connection" and value.strip().lower() == b"close":
                    close = True
            while len(buf) < length:
                buf += await stream.receive_some(65536)
            buf = buf[length:]
            if close:  # the server ends keep-alive: reconnect
                await stream.aclose()
                stream = await trio.open_tcp_stream(host, int(port))
                buf = b""
            dt = time.perf_counter() - t0
            if not head.startswith(b"HTTP/1.1 200"):
                errors += 1
            if measuring:
                latencies.append(dt)
                count += 1
        await stream.aclose()

    async def main() -> None:
        nonlocal deadline, measuring
        deadline = time.perf_counter() + warmup + duration
        async with trio.open_nursery() as nursery:
            for i in range(concurrency):
                nursery.start_soon(conn, i)
            await trio.sleep(warmup)
            measuring = True
            start = time.perf_counter()
        elapsed = time.perf_counter() - start
        lat = sorted(latencies)
        print(
            json.dumps(
                {
                    "requests": len(lat),
                    "errors": errors,
                    "elapsed_s": elapsed,
                    "p50_ms": 1000 * lat[len(lat) // 2] if lat else None,
                    "p90_ms": 1000 * lat[int(len(lat) * 0.90)] if lat else None,
                    "p99_ms": 1000 * lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None,
                    "max_ms": 1000 * lat[-1] if lat else None,
                }
            )
        )

    trio.run(main)


# ----------------------------------------------------------------------------- driver


def _cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _preload(api: str, n: int, domain: object) -> list[str]:
    import httpx

    from node.core import builder
    from node.core.codec import event_to_obj
    from node.core.eip712 import event_digest
    from node.keys.service_keys import ServiceKey

    now = int(time.time())
    paths, batch = [], []
    for i in range(n):
        secret = (i + 1).to_bytes(32, "big")
        key = ServiceKey.generate("Ed25519", f"k{i}")
        ev = builder.inception(now, builder.controller_set([secret]), 1, keys=[key.published(("sig",), now)])
        signed = builder.sign_event(domain, ev, [secret])  # type: ignore[arg-type]
        paths.append(f"/v1/subjects/0x{event_digest(domain, ev).hex()}/keys/k{i}")  # type: ignore[arg-type]
        batch.append(event_to_obj(signed))
    with httpx.Client(base_url=api, timeout=60) as client:
        for start in range(0, n, 500):
            body = client.post("/v1/events", json={"events": batch[start : start + 500]}).json()
            assert body["accepted"] == len(batch[start : start + 500]), body
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~5 s run")
    ap.add_argument("--subjects", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--duration", type=float, default=15.0)
    ap.add_argument("--max-requests", type=int, default=200_000)
    ap.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run as the load generator
    ap.add_argument("--targets", help=argparse.SUPPRESS)
    args = ap.parse_args()
    warmup = 0.5 if args.quick else 1.0
    duration = 3.0 if args.quick else args.duration
    if args.worker:
        _worker(
            args.worker,
            json.loads(Path(args.targets).read_text()),
            args.concurrency,
            args.duration,
            warmup,
            args.max_requests,
        )
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from node.cli.demo import spawn_node
    from node.cli.init import init_data_dir
    from node.config import load_config
    from node.keys.keystore import Password

    os.environ["KEYREG_KDF_N"] = "1024"
    load_before = round(os.getloadavg()[0], 2)
    print(f"load average before the run: {load_before} on {os.cpu_count()} CPUs (other work skews the figures)")
    with tempfile.TemporaryDirectory(prefix="keyreg-bench-") as tmp:
        data_dir = Path(tmp) / "node"
        init_data_dir(data_dir, Password("bench"))
        env = {"KEYREG_API_RATE_LIMIT_PER_S": "0", "KEYREG_LOG_LEVEL": "warning"}
        t0 = time.perf_counter()
        with spawn_node(data_dir, env, args=("--no-keystore", "--log-level", "warning")) as node:
            print(f"node up at {node.api} in {time.perf_counter() - t0:.1f}s (SQLite, {data_dir})")
            t1 = time.perf_counter()
            paths = _preload(node.api, args.subjects, load_config(data_dir).domain)
            print(f"pre-loaded {len(paths)} subjects in {time.perf_counter() - t1:.1f}s")
            cpu_before = _cpu_seconds(node.proc.pid)
            targets = Path(tmp) / "targets.json"
            targets.write_text(json.dumps(paths))
            print(
                f"load: {args.concurrency} keep-alive connections, {duration:.0f}s after {warmup}s warm-up, "
                f"separate process"
            )
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    node.api,
                    "--targets",
                    str(targets),
                    "--concurrency",
                    str(args.concurrency),
                    "--duration",
                    str(duration),
                    "--max-requests",
                    str(args.max_requests),
                ]
                + (["--quick"] if args.quick else []),
                capture_output=True,
                text=True,
                timeout=duration + 120,
                check=True,
            )
            result = json.loads(out.stdout.strip().splitlines()[-1])
            server_cpu = _cpu_seconds(node.proc.pid) - cpu_before
    rps = result["requests"] / result["elapsed_s"]
    print(f"requests: {result['requests']} ({result['errors']} non-200) in {result['elapsed_s']:.1f}s")
    print(
        f"latency: p50 {result['p50_ms']:.2f} ms, p90 {result['p90_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
        f"max {result['max_ms']:.1f} ms"
    )
    print(f"throughput: {rps:.0f} requests/s")
    cpu_ms = 1000 * server_cpu / max(1, result["requests"])  # includes the warm-up requests: an upper bound
    print(f"node CPU per request: {cpu_ms:.2f} ms (upper bound; about {1000 / cpu_ms:.0f} requests/s per free core)")
    print(
        json.dumps(
            {
                "p50_ms": round(result["p50_ms"], 3),
                "p99_ms": round(result["p99_ms"], 3),
                "requests_per_s": round(rps, 1),
                "requests": result["requests"],
                "errors": result["errors"],
                "concurrency": args.concurrency,
                "duration_s": round(result["elapsed_s"], 2),
                "subjects": args.subjects,
                "endpoint": "GET /v1/subjects/{id}/keys/{kid}",
                "how": (
                    "real `keyreg node run` (hypercorn trio, SQLite) + separate-process trio keep-alive "
                    "HTTP/1.1 client, loopback"
                ),
                "cpus": os.cpu_count(),
                "node_cpu_ms_per_request": round(cpu_ms, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
