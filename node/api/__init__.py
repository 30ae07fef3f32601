"""The node's HTTP API: the public read/write API and the loopback-only admin (local) API."""
