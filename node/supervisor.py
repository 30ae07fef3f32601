"""Supervision of the node's long-running services (issue 13, rule 4).

A fault in one service (p2p and sync, the chain watcher and anchoring, the governance indexer and
relay, the rotation scheduler) must never stop the node. :meth:`Supervisor.run` runs one service in
its own nursery; when it fails after it first started, the failure is caught, logged once with its
cause (no secrets: URLs are cut to scheme://host:port and messages are bounded), counted, and the
service is started again after an exponential backoff (``[supervisor]`` in node/config.py). A
failure *before* the service first started is a configuration error: it is raised, so the node
refuses to start with a clear message instead of looping on a bad config.

What each service is doing is in :attr:`Supervisor.states`: ``GET /v1/health`` shows it under
``services.<name>.supervisor`` (:meth:`Supervisor.wrap_status`) and ``/metrics`` under
``keyreg_service_*`` (:class:`SupervisorCollector`). Names are the node's own service names, so
the label set is fixed.

Cancellation (node shutdown) is never caught: ``trio.Cancelled`` is a ``BaseException`` and
passes through, and a backoff is a plain ``trio.sleep`` that the cancel interrupts at once.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import trio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .config import SupervisorConfig
from .core.errors import ConfigError, KeyregError

log = logging.getLogger("keyreg.supervisor")

# The states a supervised service is in.
STARTING, RUNNING, BACKING_OFF, STOPPED, FAILED = "starting", "running", "backing-off", "stopped", "failed"

MAX_CAUSE_CHARS = 300  # an exception message can be arbitrarily long (and attacker-influenced)
# What the URL scrubber reads: the message is cut to this before anything else looks at it, so a
# long message costs no more than a short one (the shown part is cut again to MAX_CAUSE_CHARS).
SCRUB_WINDOW = 2 * MAX_CAUSE_CHARS
_SCHEME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-")
_MAX_SCHEME = 32
_URL_END = frozenset(" \t\n\r\f\v'\"")

StatusProvider = Callable[[], dict[str, Any]]


def scrub_urls(text: str, cut: bool = False) -> str:
    """``text`` with every ``scheme://user@host/path?query`` reduced to ``scheme://host``: user info,
    paths and queries of RPC/database URLs often hold API keys or passwords.

    Linear in ``len(text)``: each ``://`` is found with ``str.find``, its scheme read back at most
    ``_MAX_SCHEME`` characters, and the scan goes on after the URL. ``cut``: ``text`` is the start
    of a longer message, so a URL running to its end is incomplete (its host part may really be
    user info cut before its ``@``): it is reduced to ``scheme://...``.
    """
    out: list[str] = []
    i = 0
    while (j := text.find("://", i)) >= 0:
        k = j
        while k > i and j - k < _MAX_SCHEME and text[k - 1] in _SCHEME_CHARS:
            k -= 1
        while k < j and not text[k].isalpha():
            k += 1  # a scheme starts with a letter
        if k == j:  # no scheme: not a URL (what follows may hold one)
            out.append(text[i : j + 3])
            i = j + 3
            continue
        end = j + 3
        while end < len(text) and text[end] not in _URL_END:
            end += 1
        authority = text[j + 3 : end]
        for stop in "/?#":
            authority = authority.split(stop, 1)[0]
        host = "..." if cut and end == len(text) else authority.rpartition("@")[2]
        out.append(f"{text[i:k]}{text[k:j]}://{host}")
        i = end
    out.append(text[i:])
    return "".join(out)


def describe(exc: BaseException) -> str:
    """One secret-free line naming a failure: type, bounded message, where it was raised.

    An exception group is described by its first leaf, with how many more there were.
    """
    leaves = list(_leaves(exc))
    first = leaves[0] if leaves else exc
    message = first.message if isinstance(first, KeyregError) else str(first)
    cut = len(message) > SCRUB_WINDOW
    message = scrub_urls(" ".join(message[:SCRUB_WINDOW].split()), cut)
    if cut or len(message) > MAX_CAUSE_CHARS:
        message = message[:MAX_CAUSE_CHARS] + "..."
    text = f"{type(first).__name__}: {message}" if message else type(first).__name__
    frames = traceback.extract_tb(first.__traceback__)
    if frames:
        # the innermost frame of our own code says more than a library's internals
        ours = [f for f in frames if "/node/" in f.filename]
        where = (ours or frames)[-1]
        text += f" (at {_short_path(where.filename)}:{where.lineno} in {where.name})"
    if len(leaves) > 1:
        text += f" (+{len(leaves) - 1} more)"
    return text


def _leaves(exc: BaseException) -> Iterator[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            yield from _leaves(sub)
    else:
        yield exc


def _short_path(path: str) -> str:
    for marker in ("/node/", "/site-packages/"):
        i = path.rfind(marker)
        if i >= 0:
            return path[i + 1 :]
    return path.rsplit("/", 1)[-1]


def _frames(exc: BaseException) -> str:
    """The stack of each leaf, frames only: source lines and names, never the values involved."""
    return "".join("".join(traceback.format_tb(leaf.__traceback__)) for leaf in _leaves(exc))


@dataclass
class ServiceState:
    """What one supervised service is doing; read by /v1/health and /metrics."""

    name: str
    state: str = STARTING
    restarts: int = 0  # times it was started again after a failure
    failures: int = 0  # failures since the node started
    streak: int = 0  # consecutive failures (sets the backoff); reset by a run of healthy_after_s
    last_error: str | None = None
    last_error_at: float | None = None  # unix time
    retry_in_s: float | None = None  # the backoff being waited out (state backing-off)
    running_since: float | None = None  # unix time

    def to_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "restarts": self.restarts,
            "failures": self.failures,
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
            "retry_in_s": self.retry_in_s,
            "running_since": self.running_since,
        }


class Supervisor:
    """Runs services, restarting each after a failure with capped exponential backoff."""

    def __init__(self, config: SupervisorConfig) -> None:
        if not 0 < config.restart_initial_s <= config.restart_max_s:
            raise ConfigError(
                "config [supervisor]: need 0 < restart_initial_s <= restart_max_s "
                f"(got {config.restart_initial_s}, {config.restart_max_s})"
            )
        if config.healthy_after_s < 0:
            raise ConfigError("config [supervisor]: healthy_after_s must be >= 0")
        self.config = config
        self.states: dict[str, ServiceState] = {}

    def backoff(self, streak: int) -> float:
        """Seconds to wait before the restart that follows ``streak`` consecutive failures."""
        c = self.config
        # min() before the power would overflow nothing here: exponent capped at 64
        return float(min(c.restart_max_s, c.restart_initial_s * 2.0 ** min(streak - 1, 64)))

    async def run(
        self,
        name: str,
        service: Callable[..., Awaitable[object]],
        *args: Any,
        starts: bool = True,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run ``service(*args)`` until cancelled, restarting it after each failure.

        ``starts=True``: ``service`` takes ``task_status`` (a node starter) and this call's
        ``task_status.started()`` comes once it first started; a failure before that is raised.
        ``starts=False``: a plain loop, counted as started at once. A service that returns
        normally is done (e.g. disabled by config): state ``stopped``, no restart.
        """
        if name in self.states:
            raise ValueError(f"service {name!r} is supervised twice")
        state = self.states[name] = ServiceState(name)
        first = True
        while True:
            began = trio.current_time()
            try:
                async with trio.open_nursery() as nursery:
                    if starts:
                        await nursery.start(service, *args)
                    else:
                        nursery.start_soon(service, *args)
                    state.state, state.retry_in_s, state.running_since = RUNNING, None, time.time()
                    if first:
                        first = False
                        task_status.started()
            except Exception as exc:  # trio.Cancelled and KeyboardInterrupt are BaseException: not caught
                if first:
                    state.state = FAILED
                    state.last_error, state.last_error_at = describe(exc), time.time()
                    raise
                delay = self._failed(state, exc, trio.current_time() - began)
                await trio.sleep(delay)
                state.restarts += 1
                state.state, state.retry_in_s = STARTING, None
                continue
            state.state, state.running_since = STOPPED, None
            if first:
                task_status.started()
            return

    def _failed(self, state: ServiceState, exc: Exception, ran_s: float) -> float:
        if ran_s >= self.config.healthy_after_s:
            state.streak = 0
        state.streak += 1
        state.failures += 1
        delay = self.backoff(state.streak)
        cause = describe(exc)
        state.state, state.retry_in_s, state.running_since = BACKING_OFF, delay, None
        state.last_error, state.last_error_at = cause, time.time()
        log.error("service %s failed: %s; restarting in %.1fs", state.name, cause, delay)
        log.debug("service %s failure stack:\n%s", state.name, _frames(exc))
        return delay

    def wrap_status(self, name: str, provider: StatusProvider) -> StatusProvider:
        """``provider`` with this service's supervision under ``supervisor``; ``ok`` is false
        while the service is not running."""

        def status() -> dict[str, Any]:
            try:
                inner = provider()
            except Exception as exc:  # a broken provider must not hide the supervision state
                inner = {"ok": False, "error": type(exc).__name__}
            state = self.states.get(name)
            if state is None:
                return inner
            ok = bool(inner.get("ok", True)) and state.state in (RUNNING, STOPPED)
            return {**inner, "ok": ok, "supervisor": state.to_dict()}

        return status

    def status_of(self, name: str) -> StatusProvider:
        """A status for a supervised service that registered none (or has not yet)."""

        def status() -> dict[str, Any]:
            state = self.states[name]
            return {"ok": state.state in (RUNNING, STOPPED), "supervisor": state.to_dict()}

        return status


class SupervisorCollector:
    """Prometheus view of the supervised services (``keyreg_service_*``, labelled by service name)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Any]:
        up = GaugeMetricFamily("keyreg_service_up", "1 while the service runs, 0 otherwise", labels=["service"])
        backoff = GaugeMetricFamily(
            "keyreg_service_backoff_seconds",
            "Backoff being waited out before a restart (0 if none)",
            labels=["service"],
        )
        restarts = CounterMetricFamily("keyreg_service_restarts", "Restarts after a failure", labels=["service"])
        failures = CounterMetricFamily(
            "keyreg_service_failures", "Failures caught by the supervisor", labels=["service"]
        )
        for name, s in list(self.supervisor.states.items()):
            up.add_metric([name], 1.0 if s.state == RUNNING else 0.0)
            backoff.add_metric([name], s.retry_in_s or 0.0)
            restarts.add_metric([name], s.restarts)
            failures.add_metric([name], s.failures)
        yield from (up, backoff, restarts, failures)
