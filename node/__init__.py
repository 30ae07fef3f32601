"""keyreg: a peer-to-peer decentralized key registry."""

__version__ = "0.1.0"
