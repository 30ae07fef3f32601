"""The peer-to-peer layer: libp2p host, gossip of key events, anti-entropy sync (docs/p2p.md)."""

from .service import P2PService, run_p2p

__all__ = ["P2PService", "run_p2p"]
