"""Shared pieces of the CLI topic modules: options, error handling, output, the node client.

Every command is wrapped by :func:`handles_errors`: a :class:`KeyregError` prints
``error [code]: message`` (or a JSON object with ``--json``) on stderr and exits with status 2.

Import rule of the CLI (tests/cli/test_cli_startup.py): at module level a topic module imports only
the standard library, typer, rich, ``keyreg.core.errors`` and this module; everything else a command
imports when it runs, so ``keyreg --help`` and the offline commands start without web3, eth-account,
libp2p, SQLAlchemy or httpx.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from ..core.errors import ConfigError, KeyregError, MalformedEvent, NetworkError

if TYPE_CHECKING:
    from ..config import Config

err_console = Console(stderr=True)
out_console = Console()

DataDirOpt = Annotated[
    Path,
    typer.Option("--data-dir", "-d", envvar="KEYREG_DATA_DIR", help="Node data directory.", show_default=True),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ServicePurposeOpt = Annotated[
    list[str] | None, typer.Option("--purpose", "-p", help="Key purpose (repeatable); default: sig.")
]
ServiceAlgOpt = Annotated[str, typer.Option("--alg", help="Service key algorithm: Ed25519, P-256 or secp256k1.")]
PasswordFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--password-file",
        help="File holding the keystore password (else KEYREG_PASSWORD, else a prompt).",
        exists=True,
        dir_okay=False,
    ),
]
NodeOpt = Annotated[
    str | None,
    typer.Option("--node", envvar="KEYREG_NODE", help="Node API URL (default: from the data dir's config)."),
]
DEFAULT_DATA_DIR = Path(".keyreg")

F = TypeVar("F", bound=Callable[..., Any])


class RemoteError(KeyregError):
    """The node refused a request; ``code`` is the node's error code."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message, **details)
        self.code = code


def handles_errors(fn: F) -> F:
    """Catch KeyregError once per command: print code and message, exit 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KeyregError as exc:
            if kwargs.get("as_json"):
                print(json.dumps({"error": exc.to_dict()}), file=sys.stderr)
            else:
                err_console.print(
                    Text.assemble(("error", "bold red"), f" [{exc.code}]: {exc.message}"), highlight=False
                )
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    """One JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def load(data_dir: Path) -> Config:
    """The config of a data dir (defaults when it has no keyreg.toml)."""
    from ..config import load_config

    return load_config(data_dir)


_DURATION_RE = re.compile(r"(\d+)([smhdw]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> int:
    """'90', '30s', '30m', '24h', '7d', '2w', or combined '1h30m' -> seconds."""
    text = text.strip().lower()
    pos, total = 0, 0
    while pos < len(text):
        m = _DURATION_RE.match(text, pos)
        if m is None:
            raise ConfigError(f"cannot read duration {text!r}: use e.g. 30s, 30m, 24h, 7d")
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not text:
        raise ConfigError("empty duration")
    return total


def parse_time(text: str | None, now: int | None = None) -> int | None:
    """'now', '+1h' / '-30m' (relative), unix seconds, or ISO 8601 -> unix seconds."""
    if text is None:
        return None
    now = int(time.time()) if now is None else now
    t = text.strip()
    if t == "now":
        return now
    if t[:1] in "+-" and len(t) > 1 and not t[1:].isdigit():
        d = parse_duration(t[1:])
        return now + d if t[0] == "+" else now - d
    if t.lstrip("+").isdigit():
        return int(t.lstrip("+"))
    try:
        return int(datetime.fromisoformat(t.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise ConfigError(f"cannot read time {text!r}: use now, +1h, unix seconds or ISO 8601") from None


def fmt_time(ts: int | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %z")


def _refuse_redirects() -> Any:
    """A urllib handler that follows no redirect: a 3xx is the node's answer, not an address to go to."""
    import urllib.request

    class RefuseRedirects(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return RefuseRedirects


class NodeClient:
    """A small HTTP client for one node's API; errors become KeyregErrors with the node's code."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"a node URL starts with http:// or https://, got {url!r}")
        self.url = url.rstrip("/")
        self.timeout = timeout

    @classmethod
    def for_config(cls, config: Config, override: str | None = None) -> NodeClient:
        if override:
            return cls(override)
        runfile = config.data_dir / "node.json"
        if runfile.exists():  # a running node that let the OS choose its port says where it is
            try:
                api = json.loads(runfile.read_text()).get("api")
                if api:
                    return cls(api)
            except ValueError:
                pass
        host = config.api.host if config.api.host not in ("0.0.0.0", "::") else "127.0.0.1"  # noqa: S104
        return cls(f"http://{host}:{config.api.port}" if ":" not in host else f"http://[{host}]:{config.api.port}")

    def request(
        self, method: str, path: str, params: dict[str, Any] | None = None, json_body: Any = None, content: bytes = b""
    ) -> Any:
        """One request to the node; its JSON answer, or a NetworkError/RemoteError.

        The standard library's client: a command makes a handful of requests, and httpx would cost
        its start-up (httpcore loads trio when installed) on every run. Redirects are not followed.
        """
        import urllib.error
        import urllib.parse
        import urllib.request
        from http.client import HTTPException

        from ..core.codec import loads_strict

        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        headers = {"accept": "application/json"}
        if json_body is not None:
            content = json.dumps(json_body).encode()
            headers["content-type"] = "application/json"
        req = urllib.request.Request(url, data=content or None, headers=headers, method=method)  # noqa: S310 (http[s] only: __init__)
        opener = urllib.request.build_opener(_refuse_redirects())
        try:
            # One connection per request, closed with the response: nothing is left open.
            with opener.open(req, timeout=self.timeout) as resp:
                status, data = resp.status, resp.read()
        except urllib.error.HTTPError as exc:  # an answer with a 3xx-5xx status: its body is still read
            with exc:
                status, data = exc.code, exc.read()
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            raise NetworkError(
                f"cannot reach the node at {self.url} ({type(exc).__name__}): start it with `keyreg node run` "
                "or pass --node URL"
            ) from None
        try:
            body = loads_strict(data)  # nesting bounded before parsing: the node may be anyone's
        except MalformedEvent:
            raise NetworkError(f"{self.url}{path} answered {status} with a non-JSON body") from None
        if status >= 400:
            if isinstance(body, dict) and "code" in body:
                raise RemoteError(str(body["code"]), f"node refused: {body.get('message', '')}")
            raise NetworkError(f"{self.url}{path} answered {status}")
        return body

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post_events(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Submit events as one batch; raise on the first rejected one."""
        body = self.request("POST", "/v1/events", json_body={"events": events})
        results: list[dict[str, Any]] = body["results"]
        for r in results:
            if r["status"] == "rejected":
                e = r.get("error", {})
                raise RemoteError(e.get("code", "rejected"), f"node rejected the event: {e.get('message', '')}")
        return results

    def close(self) -> None:
        """Nothing to release (connections are per request); kept for symmetry."""


class Session:
    """What a signing command needs: config, the unlocked keystore, and a client of the node."""

    def __init__(self, data_dir: Path, password_file: Path | None, node: str | None, unlock: bool = True) -> None:
        from ..keys.keystore import Keystore, resolve_password

        self.config = load(data_dir)
        self.keystore = Keystore.open(data_dir / "keystore")
        if unlock:
            password = resolve_password(password_file)
            with err_console.status("unlocking the keystore", spinner="dots"):
                self.keystore.unlock(password)
        self.client = NodeClient.for_config(self.config, node)

    @property
    def subject(self) -> bytes:
        s = self.keystore.subject
        if s is None:
            raise ConfigError("this keystore has no subject yet: run `keyreg subject create` first")
        return s

    def state(self, subject: bytes | None = None) -> dict[str, Any]:
        subject = subject or self.subject
        result: dict[str, Any] = self.client.get(f"/v1/subjects/0x{subject.hex()}")
        return result

    def head(self) -> Any:
        from ..keys.operations import Head

        st = self.state()
        gov = bytes.fromhex(st["governor"][2:]) if st.get("governor") else bytes(20)  # a rotation restates it
        return Head(self.subject, st["seq"], bytes.fromhex(st["head"][2:]), st["timestamp"], gov)


def subject_arg(value: str | None, session_subject: Callable[[], bytes]) -> bytes:
    """A subject id given on the command line (0x + 64 hex), or the keystore's own subject."""
    if value is None:
        return session_subject()
    v = value.removeprefix("0x")
    if len(v) != 64:
        raise ConfigError(f"a subject id is 0x + 64 hex digits, got {value!r}")
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise ConfigError(f"a subject id is 0x + 64 hex digits, got {value!r}") from None
