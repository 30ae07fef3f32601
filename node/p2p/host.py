"""The libp2p host: TCP + Noise + yamux (or mplex) + identify, a persistent peer key, bootstrap.

Choices that py-libp2p 0.8 does not make for us (see docs/p2p.md):
- ``ConnectionConfig(max_connections_per_peer=1)``: otherwise every dial waits 250 ms
  (happy-eyeballs between parallel connections we never want);
- a connection cap from ``P2PConfig.max_connections``;
- the peer key is an Ed25519 seed in ``<data_dir>/p2p.key`` (mode 0600), so the peer id survives
  restarts and bootstrap lists stay valid.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.network.config import ConnectionConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr

from ..config import P2PConfig
from ..core.errors import ConfigError

log = logging.getLogger(__name__)

KEY_FILE = "p2p.key"
ADDR_FILE = "p2p.addr"
_SEED_BYTES = 32


def load_or_create_key(data_dir: Path) -> KeyPair:
    """The node's persistent Ed25519 peer key (created with mode 0600 on first use)."""
    path = Path(data_dir) / KEY_FILE
    if path.exists():
        seed = path.read_bytes()
        if len(seed) != _SEED_BYTES:
            raise ConfigError(f"{path}: expected a {_SEED_BYTES}-byte Ed25519 seed; delete it to make a new peer id")
        return create_new_key_pair(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(_SEED_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(seed)
    return create_new_key_pair(seed)


def parse_peer_addr(addr: str) -> PeerInfo:
    """A bootstrap multiaddr with its /p2p/<peer id> suffix, as PeerInfo."""
    try:
        return info_from_p2p_addr(multiaddr.Multiaddr(addr))
    except Exception as exc:  # multiaddr raises several unrelated types
        raise ConfigError(f"bad peer multiaddr {addr!r} (expected /ip4/H/tcp/P/p2p/ID): {exc}") from None


def build_host(config: P2PConfig, key_pair: KeyPair, muxer: Literal["YAMUX", "MPLEX"] = "YAMUX") -> IHost:
    """Create (not start) the host; run it with ``host.run([listen_addr])``."""
    conn = ConnectionConfig(
        max_connections=config.max_connections,
        max_connections_per_peer=1,
        high_watermark=config.max_connections,
        low_watermark=min(config.max_connections, 8),
        min_connections=0,
        dial_timeout=5.0,
    )
    kwargs: dict[str, Any] = {}
    if config.mdns:
        kwargs["enable_mDNS"] = True
    return new_host(
        key_pair=key_pair,
        muxer_preference=muxer,
        listen_addrs=[multiaddr.Multiaddr(config.listen)],
        connection_config=conn,
        **kwargs,
    )


def listen_addrs(host: IHost) -> list[str]:
    """Full multiaddrs (with /p2p/<id>) other nodes can bootstrap from."""
    pid = host.get_id().to_string()
    out = []
    for a in host.get_addrs():
        s = str(a)
        out.append(s if "/p2p/" in s else f"{s}/p2p/{pid}")
    return out


def write_addr_file(data_dir: Path, addrs: list[str]) -> Path:
    """Write the listen multiaddrs, one per line, atomically (tests and the devnet read it)."""
    path = Path(data_dir) / ADDR_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(a + "\n" for a in addrs))
    tmp.replace(path)
    return path


def peer_id_of(addr: str) -> ID:
    """The peer id named by a /p2p/ multiaddr."""
    return parse_peer_addr(addr).peer_id
