"""Keys a node holds for its own subject: the encrypted keystore, service keys, and rotation."""
