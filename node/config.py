"""Node configuration: one TOML file in the data directory, every limit with a safe default.

``keyreg init`` writes ``<data_dir>/keyreg.toml``; every field can be overridden by an
environment variable ``KEYREG_<SECTION>_<FIELD>`` (e.g. ``KEYREG_CHAIN_RPC_URL``). Secrets (the
keystore password, the admin token) are never stored in this file: they come from env vars or files.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

from .core.errors import ConfigError
from .core.limits import Limits
from .core.records import Domain

# anvil's first account deploying at nonce 0 gets this address: the devnet registry by default.
DEVNET_REGISTRY = "0x5fbdb2315678afecb367f032d93f642f64180aa3"
DEVNET_CHAIN_ID = 31337


@dataclass(frozen=True)
class NetworkConfig:
    chain_id: int = DEVNET_CHAIN_ID
    registry: str = DEVNET_REGISTRY  # registry contract address (the EIP-712 verifyingContract)


@dataclass(frozen=True)
class StoreConfig:
    url: str = ""  # SQLAlchemy URL; "" = sqlite:///<data_dir>/keyreg.db
    batch_size: int = 512  # events per ingest transaction


@dataclass(frozen=True)
class IngestConfig:
    # Processes that recover the signers of sync pulls (bulk loads) beside the node, on their own
    # cores; at most one per CPU, none on a one-CPU machine; 0 = in-line. Gossip and API batches
    # always recover in-line (docs/adr/0023-signature-workers.md).
    signature_workers: int = 2
    # Conflicts (another event at an occupied seq, validly signed by the signer set in force) that
    # may reach fork choice, which replays the subject's log: per subject per window (docs/p2p.md).
    conflicts_per_subject: int = 16
    conflict_window_s: float = 60.0
    # Rejected events audited one by one per ingest call; the rest go into one summary record.
    reject_audits_per_batch: int = 16


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8545 + 1000  # 9545
    admin_host: str = "127.0.0.1"  # the admin/local endpoints are loopback-only, always
    admin_port: int = 9546
    max_body_bytes: int = 1024 * 1024
    rate_limit_per_s: float = 200.0  # per client address, token bucket
    rate_burst: int = 400
    # Events submitted per client (a batch costs one token per event; also off when
    # rate_limit_per_s is 0): signature recovery is the expensive part of a submission.
    submit_events_per_s: float = 1000.0
    submit_events_burst: int = 2000  # at least one full batch (1,000 events)
    # New subjects (inceptions) submitted per client, within the event budget: every node keeps
    # every subject, so they are budgeted much tighter (docs/adr/0027-subject-admission.md).
    new_subjects_per_s: float = 20.0
    new_subjects_burst: int = 1000  # one full batch of inceptions
    # Request body bytes per client, charged before a body is parsed (also off when
    # rate_limit_per_s is 0): parsing 1 MiB of JSON costs far more than one request token.
    body_bytes_per_s: float = 4 * 1024 * 1024
    body_bytes_burst: int = 8 * 1024 * 1024  # at least max_body_bytes
    body_timeout_s: float = 30.0  # a request body must arrive in full within this (else 408, closed)
    # Unexpected errors (500 internal) logged with a traceback, at most this many per interval;
    # the rest are counted and the next one logged says how many.
    error_logs_per_interval: int = 10
    error_log_interval_s: float = 60.0
    max_connections: int = 1024  # open API connections in all; more are refused (503, closed)
    max_connections_per_client: int = 64  # open API connections per client address
    max_page_bytes: int = 1024 * 1024  # GET .../events pages end here too (at least one event)
    # HTTP/2: the whole public API served by hypercorn.trio.serve instead of the front end, so
    # without its body timeout and connection caps; off by default (docs/adr/0021-h11-front-end.md).
    http2: bool = False


@dataclass(frozen=True)
class P2PConfig:
    enabled: bool = True  # False: the node runs without the p2p service (API/chain only)
    listen: str = "/ip4/127.0.0.1/tcp/0"
    muxer: str = "yamux"  # "yamux" (preferred) or "mplex"; both are offered, this one first
    bootstrap: tuple[str, ...] = ()
    mdns: bool = False
    max_connections: int = 64
    heartbeat_s: float = 1.0
    max_message_bytes: int = 1024 * 1024
    # Up to ~2,000 average events fit in max_message_bytes, which bounds a message either way;
    # 2,048 cost ~15% less CPU per event than 256 in bench/gossip.py (fewer messages per event).
    # Receivers reject batches over their own limit: keep it equal across a network.
    max_events_per_message: int = 2048
    publish_interval_s: float = 0.05  # pacing between gossip publishes
    # Our own publishes go to every subscribed peer with an acceptable score, not just the mesh
    # (go-libp2p's floodPublish, on by default there too): fewer hops, and no duplicate copies.
    flood_publish: bool = True
    # Events batches of 4 KiB or more are published zlib-compressed (~3.7x smaller: every hop
    # reads, decrypts and hashes fewer bytes). Receivers accept both forms; false keeps our
    # publishes readable by nodes older than wire version 1.1 (docs/p2p.md).
    compress_gossip: bool = True
    peer_rate_msgs_per_s: float = 50.0
    # Bytes of JSON text a forwarder's messages may inflate to per second (burst: twice this or
    # two max_message_bytes): a compressed message is charged by what it costs to parse.
    peer_rate_bytes_per_s: float = 16 * 1024 * 1024
    # Gossip messages admitted but not yet judged (each up to max_message_bytes): per forwarder
    # and in all; beyond, dropped unjudged and unpenalised (docs/p2p.md, "Validation").
    max_validating_per_peer: int = 32
    max_validating: int = 256
    sync_interval_s: float = 30.0
    sync_frame_bytes: int = 1024 * 1024
    # Serving /keyreg/sync/1 (docs/p2p.md section 4, "Bounds"): sessions at once, in all and per
    # peer, and each peer's work budget in units of ~1 us of the server's CPU (a token bucket; a
    # peer over it gets an "over_budget" error frame, and a strike if it comes back before its
    # retry_after_ms); the total rate bounds what all peers together may take of the node.
    sync_server_slots: int = 8
    sync_server_slots_per_peer: int = 2
    sync_serve_units_per_s: float = 100_000.0
    sync_serve_burst_units: int = 5_000_000
    sync_serve_total_units_per_s: float = 400_000.0
    # Pulling: what one pull takes from a server at most (wants also bound the tree nodes asked,
    # 16x, and the leaves listed, 4x); a pull that reaches a bound stops cleanly, keeps what it
    # received and leaves the rest to the next pull.
    sync_max_wants_per_pull: int = 65_536
    sync_max_events_per_pull: int = 1_000_000
    sync_max_frames_per_pull: int = 16_384
    # New subjects (inceptions) admitted per forwarder (token bucket; a message over it is ignored:
    # not ingested, not forwarded, not penalised) and per sync pull (past it, the pull ingests no
    # more and the next pull goes on): docs/adr/0027-subject-admission.md.
    new_subjects_per_peer_per_s: float = 1000.0
    new_subjects_per_peer_burst: int = 10_000
    sync_max_new_subjects_per_pull: int = 100_000


@dataclass(frozen=True)
class ChainConfig:
    rpc_url: str = ""  # "" = chain features off (gossip and API still run)
    confirmations: int = 2
    poll_interval_s: float = 2.0
    rpc_timeout_s: float = 10.0  # total per RPC call, whatever the endpoint trickles
    rpc_max_answer_bytes: int = 64 * 1024 * 1024  # an RPC answer past this is refused
    rpc_max_in_flight: int = 16  # RPC calls in flight in the process (abandoned ones included)
    anchor_epoch_s: float = 30.0
    anchor_epoch_events: int = 1000
    relayer_keystore: str = ""  # path of a V3 keyfile that pays for anchoring; "" = no relaying
    start_block: int = 0
    retry_max_s: float = 30.0  # longest backoff between retries while the RPC endpoint is down


@dataclass(frozen=True)
class GovConfig:
    # DAO governance (node/gov, docs/governance.md "Bounds"): what the ballot relay may spend and on
    # whose behalf, and what the proposal indexer holds. Budgets are per hour (token buckets).
    relay_gas_limit: int = 300_000  # gas cap of each relayed castVoteBySig (ours uses ~90k)
    ballots_per_voter_per_hour: int = 30
    ballots_per_client_per_hour: int = 120  # per API client address
    ballots_per_peer_per_hour: int = 600  # per gossip forwarder
    relays_per_governor_per_hour: int = 600  # transactions paid for one DAO
    relays_per_hour: int = 2_000  # transactions paid in all
    max_pending_ballots: int = 1_024
    max_named: int = 10_000  # addresses named as governor that the indexer tracks
    max_governors: int = 1_000  # recognised DAOs indexed
    max_proposals: int = 5_000  # each holds up to 4 KiB of description
    max_resolves_per_poll: int = 32  # named addresses checked per indexer poll
    resolve_retry_s: float = 60.0  # first re-check of a named address that is not a DAO (doubles)
    catchup_blocks_per_poll: int = 100_000  # history of newly recognised DAOs read per poll (eth_getLogs budget)
    max_refreshes_per_poll: int = 64  # proposals whose state/tallies are re-read per poll (2-3 eth_calls each)
    refresh_every_s: float = 300.0  # re-read of an open proposal with no event and no vote boundary passed


@dataclass(frozen=True)
class RotationConfig:
    enabled: bool = False
    rotation_interval_s: int = 30 * 24 * 3600
    overlap_s: int = 24 * 3600
    publish_ahead_s: int = 3600
    algorithm: str = "Ed25519"
    purposes: tuple[str, ...] = ("sig",)
    # After the node starts, an overdue rotation waits this long (for the events its peers
    # published while it was down to arrive) before publishing one of its own (docs/adr/0014).
    overdue_grace_s: int = 30
    # The service's key pickup file (private JWK, 0600, rewritten atomically when the key changes);
    # relative to the data dir; "" = off (docs/operations.md, "How the service picks up its key").
    key_file: str = ""
    # Shifts the scheduler's clock (not the registry's): drills and tests of a missed rotation.
    clock_offset_s: int = 0


@dataclass(frozen=True)
class SupervisorConfig:
    # A node service (p2p, chain, gov, rotation) that fails is restarted after a backoff that
    # doubles from restart_initial_s per consecutive failure up to restart_max_s; a run that lasted
    # healthy_after_s or longer starts the count again (node/supervisor.py).
    restart_initial_s: float = 1.0
    restart_max_s: float = 60.0
    healthy_after_s: float = 60.0


@dataclass(frozen=True)
class ExplorerConfig:
    # The web explorer on the public API port (node/explorer, docs/explorer.md); read-only but for
    # handing in signed ballots. Every page counts against the API's per-client rate limit.
    enabled: bool = True
    path: str = "/"  # where it is served; must not shadow /v1, /metrics or /openapi.json
    events_per_page: int = 50  # event log rows per page (each page recovers its events' signers)
    max_lanes: int = 64  # key lanes drawn in a timeline (the most recently published keys)
    search_results: int = 50  # subjects listed for a controller address
    ceremonies_per_page: int = 50  # pending proposals listed per page (each is described from its event)
    # Ballot typed data needs the voter's nonce, a chain read: per client address per hour.
    nonce_reads_per_client_per_hour: int = 120


@dataclass(frozen=True)
class ProposalsConfig:
    # Signing ceremonies (docs/ceremonies.md): unsigned proposals this node holds for signers on
    # other machines (/v1/proposals), in memory, never gossiped (docs/adr/0028 section 10).
    enabled: bool = True
    max_pending: int = 256  # in all; a proposal holds one event (<= limits.max_event_bytes)
    max_pending_per_subject: int = 8
    max_pending_per_client: int = 16  # created by one API client: one client cannot fill the book
    ttl_s: float = 3 * 24 * 3600.0  # a pending proposal expires this long after it was created
    max_body_bytes: int = 128 * 1024  # a create request (the event and any signatures)
    # Per API client (token buckets; off, like the API's, when api.rate_limit_per_s is 0): creating
    # costs a dry run of the rules, each signature one recovery.
    creates_per_client_per_s: float = 0.1
    creates_burst: int = 20
    signatures_per_client_per_s: float = 1.0
    signatures_burst: int = 60


@dataclass(frozen=True)
class Config:
    data_dir: Path = Path(".keyreg")
    network: NetworkConfig = field(default_factory=NetworkConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    p2p: P2PConfig = field(default_factory=P2PConfig)
    chain: ChainConfig = field(default_factory=ChainConfig)
    gov: GovConfig = field(default_factory=GovConfig)
    rotation: RotationConfig = field(default_factory=RotationConfig)
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    explorer: ExplorerConfig = field(default_factory=ExplorerConfig)
    proposals: ProposalsConfig = field(default_factory=ProposalsConfig)
    limits: Limits = field(default_factory=Limits)
    log_level: str = "info"

    @property
    def domain(self) -> Domain:
        """The EIP-712 domain every event on this network is signed under."""
        return Domain(self.network.chain_id, bytes.fromhex(self.network.registry.removeprefix("0x")))

    @property
    def store_url(self) -> str:
        return self.store.url or f"sqlite:///{(self.data_dir / 'keyreg.db').resolve()}"

    def to_toml(self) -> str:
        """Render as TOML (only simple scalar/list fields, which is all we have)."""
        lines = [f'log_level = "{self.log_level}"']
        for f in fields(self):
            value = getattr(self, f.name)
            if not is_dataclass(value):
                continue
            lines.append(f"\n[{f.name}]")
            for k, v in asdict(value).items():
                lines.append(f"{k} = {_toml_value(v)}")
        return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _coerce(current: Any, raw: Any, where: str) -> Any:
    try:
        if isinstance(current, bool):
            if isinstance(raw, str):
                return raw.lower() in ("1", "true", "yes", "on")
            return bool(raw)
        if isinstance(current, tuple):
            if isinstance(raw, str):
                return tuple(x for x in raw.split(",") if x)
            return tuple(raw)
        return type(current)(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"config {where}: cannot use {raw!r} as {type(current).__name__}") from None


def _section(obj: Any, values: dict[str, Any], name: str) -> Any:
    known = {f.name for f in fields(obj)}
    unknown = set(values) - known
    if unknown:
        raise ConfigError(f"config [{name}]: unknown setting {sorted(unknown)[0]!r}")
    return replace(obj, **{k: _coerce(getattr(obj, k), v, f"{name}.{k}") for k, v in values.items()})


def _deprecated_recovery(values: dict[str, Any]) -> None:
    """``[ingest] recovery`` (every keyreg.toml written before ADR 0023 has it) read as
    ``signature_workers``: "threads" means in-line (0), "auto" and "process" the default."""
    old = values.pop("recovery", None)
    if old is None:
        return
    if old not in ("auto", "process", "threads"):
        raise ConfigError(f"config ingest.recovery (deprecated): {old!r} is not auto, process or threads")
    if old == "threads":
        values.setdefault("signature_workers", 0)


def load_config(data_dir: Path | str, overrides: dict[str, dict[str, Any]] | None = None) -> Config:
    """Read <data_dir>/keyreg.toml (if present), then KEYREG_* env vars, then explicit overrides."""
    data_dir = Path(data_dir)
    cfg = Config(data_dir=data_dir)
    path = data_dir / "keyreg.toml"
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    for f in fields(cfg):
        section = getattr(cfg, f.name)
        if not is_dataclass(section):
            continue
        values = dict(raw.get(f.name, {}))
        if f.name == "ingest":
            _deprecated_recovery(values)
        for sub in fields(section):
            env = os.environ.get(f"KEYREG_{f.name.upper()}_{sub.name.upper()}")
            if env is not None:
                values[sub.name] = env
        values.update((overrides or {}).get(f.name, {}))
        cfg = replace(cfg, **{f.name: _section(section, values, f.name)})
    if "log_level" in raw:
        cfg = replace(cfg, log_level=str(raw["log_level"]))
    if not 0 <= cfg.ingest.signature_workers <= 64:
        raise ConfigError("config ingest.signature_workers must be 0 to 64")
    if cfg.ingest.conflicts_per_subject < 1 or cfg.ingest.conflict_window_s <= 0:
        raise ConfigError("config ingest.conflicts_per_subject must be >= 1 and ingest.conflict_window_s > 0")
    return cfg
