"""The encrypted keystore: what a subject's node holds, at rest.

Two custody modes (docs/operations.md "Custody", ADR 0028 section 11), recorded in
``keystore.json`` as ``mode`` with the ``roles`` it holds:

- ``operator`` (the default of ``keyreg init``): the node holds the **operator key** only (a 1-of-1
  operator set over its address, scoped to the purposes the scheduler manages) and the service
  keys. The controllers and their pre-committed next generation live elsewhere (keyfiles moved
  off the machine, hardware wallets); the node signs operator updates and nothing else, so a
  stolen node cannot rotate, revoke or re-delegate the subject.
- ``all-on-node`` (``keyreg init --all-on-node``, development): the node also holds the current
  controllers and the next generation, as before protocol 2. Whoever takes the node takes the
  subject.

Layout (directory 0700, every file 0600, written atomically)::

    <data_dir>/keystore/
        keystore.json                      non-secret metadata: mode, roles, subject, threshold, ...
        operator/op-00.json                the operator key (operator mode)
        controllers/gen-0000/ctrl-00.json  Ethereum V3 keyfiles, one per controller (all-on-node)
        controllers/gen-0001/...           the *next* set, committed by hash in the log (all-on-node)
        service/<key id>.json              service keys, V3 format too (see below)

Controller generation ``g`` signs today; generation ``g + 1`` is the pre-rotation set whose hash
the log commits to. A controller rotation reveals ``g + 1``, commits to a fresh ``g + 2`` and
advances ``generation``. A keystore of format 1 (from before the custody modes) holds controllers
and is opened as ``all-on-node``, with a warning.

Service keys (Ed25519, P-256, secp256k1) use the same Ethereum V3 JSON (scrypt, AES-128-CTR,
keccak MAC) with the 32-byte private key as the ciphertext; they carry no ``address`` and a
``keyreg`` object names the key id, algorithm, public key and purposes, so a key can be listed
without the password.

The V3 code here is ours (hashlib's OpenSSL scrypt, cryptography's AES-CTR, keccak): importing
eth-keyfile costs ~2 s per process (it pulls py_ecc), which every CLI command would pay. The tests
prove the files interoperate with eth-keyfile both ways (each opens what the other writes).

KDF: scrypt with n = 2**15, r = 8, p = 1 (about 0.15 s per key on a 2-core box, 32 MiB). ``KEYREG_KDF_N``
lowers it for tests and demos (any power of two >= 2); opening a file always uses the parameters
stored in it.

The password comes from ``--password-file``, ``KEYREG_PASSWORD``, ``KEYREG_PASSWORD_FILE``, or a
prompt; it is held in a :class:`Password` whose repr hides it, and no error or log names it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from ..core.builder import controller_set
from ..core.errors import KeyregError
from ..core.hashing import address_of_private_key, keccak
from .service_keys import ServiceKey

DEFAULT_KDF_N = 2**15
KEYSTORE_VERSION = 2
LEGACY_VERSION = 1  # controllers (current and next) on the node; opened as all-on-node
MODE_OPERATOR = "operator"
MODE_ALL_ON_NODE = "all-on-node"
ROLES = {
    MODE_OPERATOR: ["operator", "service"],
    MODE_ALL_ON_NODE: ["controllers", "next-controllers", "service"],
}
CEREMONY_HINT = (
    "build it as a proposal and have the controllers sign it where they keep their keys: "
    "`keyreg event propose ...`, `keyreg event sign` / `keyreg event attach`, then `keyreg event submit` "
    "(docs/ceremonies.md)"
)

log = logging.getLogger("keyreg.keys")


class KeystoreError(KeyregError):
    """The keystore is missing, locked, damaged, or the password is wrong."""

    code = "keystore"


class ControllersOffNode(KeystoreError):
    """The action needs the controllers, and this node holds only the operator key (by design)."""

    code = "controllers_off_node"


@dataclass(frozen=True)
class OperatorPolicy:
    """The operator set a node in operator mode signs under (ADR 0028 sections 3 and 5): the
    node's single operator address (1-of-1), the purposes it may publish and retire, how long a key
    it publishes may live past the update's timestamp, and how many in-scope keys may be live."""

    address: bytes
    purposes: tuple[str, ...]
    max_validity: int
    max_keys: int

    def to_json(self) -> dict[str, Any]:
        return {
            "operators": ["0x" + self.address.hex()],
            "threshold": 1,
            "purposes": list(self.purposes),
            "maxValidity": self.max_validity,
            "maxKeys": self.max_keys,
        }

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> OperatorPolicy:
        try:
            ops = obj["operators"]
            if len(ops) != 1 or int(obj["threshold"]) != 1:
                raise ValueError
            return cls(
                bytes.fromhex(str(ops[0]).removeprefix("0x")),
                tuple(str(p) for p in obj["purposes"]),
                int(obj["maxValidity"]),
                int(obj["maxKeys"]),
            )
        except (KeyError, TypeError, ValueError):
            raise KeystoreError("keystore.json: the operator policy is damaged") from None


class Password:
    """A keystore password; never shown by repr/str."""

    __slots__ = ("_value",)

    def __init__(self, value: str | bytes) -> None:
        raw = value.encode() if isinstance(value, str) else value
        if not raw:
            raise KeystoreError("the keystore password is empty")
        self._value = raw

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "Password(***)"

    __str__ = __repr__


def kdf_n() -> int:
    """The scrypt cost for new files: KEYREG_KDF_N or the default."""
    raw = os.environ.get("KEYREG_KDF_N")
    if not raw:
        return DEFAULT_KDF_N
    try:
        n = int(raw)
    except ValueError:
        raise KeystoreError(f"KEYREG_KDF_N must be a power of two, got {raw!r}") from None
    if n < 2 or n & (n - 1):
        raise KeystoreError(f"KEYREG_KDF_N must be a power of two >= 2, got {n}")
    return n


def resolve_password(password_file: Path | None = None, *, prompt: bool = True, confirm: bool = False) -> Password:
    """The password from a file, the environment, or an interactive prompt (in that order)."""
    path = password_file or (
        Path(os.environ["KEYREG_PASSWORD_FILE"]) if os.environ.get("KEYREG_PASSWORD_FILE") else None
    )
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            raise KeystoreError(f"cannot read password file {path}: {exc.strerror}") from None
        return Password(text.rstrip("\r\n"))
    env = os.environ.get("KEYREG_PASSWORD")
    if env:
        return Password(env)
    if prompt and sys.stdin.isatty():
        import getpass

        first = getpass.getpass("keystore password: ")
        if confirm and getpass.getpass("repeat password: ") != first:
            raise KeystoreError("the two passwords differ")
        return Password(first)
    raise KeystoreError(
        "no keystore password: set KEYREG_PASSWORD, pass --password-file, or run in a terminal to be prompted"
    )


def _ensure_private_dir(d: Path) -> None:
    """mkdir -p where every directory created is 0700 (mkdir's parents= would use the umask)."""
    missing = []
    while not d.exists():
        missing.append(d)
        d = d.parent
    for p in reversed(missing):
        p.mkdir(mode=0o700)
        os.chmod(p, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600 (never world-readable, not even briefly)."""
    _ensure_private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_private_text(path: Path, text: str) -> None:
    """Public helper for other secret files (the admin token)."""
    _write_private(path, text.encode())


def write_keyfile(path: Path, secret: bytes, password: Password) -> bytes:
    """A standalone V3 keyfile (0600, directory 0700) for a key that leaves the node: a controller
    or a next-generation key. Refuses to overwrite. Returns its address."""
    if path.exists():
        raise KeystoreError(f"{path} already exists; refusing to overwrite a keyfile")
    doc = _encrypt(secret, password)
    _write_private(path, json.dumps(doc).encode())
    return address_of_private_key(secret)


def read_keyfile(path: Path, password: Password) -> bytes:
    """The private key of a V3 keyfile (ours, geth's, eth-keyfile's, Foundry's)."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or "not JSON"
        raise KeystoreError(f"cannot read keyfile {path.name}: {why}") from None
    if not isinstance(doc, dict):
        raise KeystoreError(f"{path.name} is not a V3 keyfile")
    return _decrypt(doc, password, path.name)


_MAX_SCRYPT_N = 2**20  # refuse files that would make us allocate > 1 GiB


def _scrypt(password: bytes, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(password, salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=128 * r * n + 2**20)


def _aes_ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    ctx = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return ctx.update(data) + ctx.finalize()


def _encrypt(secret: bytes, password: Password, with_address: bool = True) -> dict[str, Any]:
    """An Ethereum V3 keyfile (scrypt, AES-128-CTR, keccak MAC) holding ``secret``."""
    salt, iv, n = os.urandom(32), os.urandom(16), kdf_n()
    derived = _scrypt(password.reveal(), salt, n, 8, 1, 32)
    ciphertext = _aes_ctr(derived[:16], iv, secret)
    doc: dict[str, Any] = {
        "crypto": {
            "cipher": "aes-128-ctr",
            "cipherparams": {"iv": iv.hex()},
            "ciphertext": ciphertext.hex(),
            "kdf": "scrypt",
            "kdfparams": {"dklen": 32, "n": n, "r": 8, "p": 1, "salt": salt.hex()},
            "mac": keccak(derived[16:32] + ciphertext).hex(),
        },
        "id": str(uuid.uuid4()),
        "version": 3,
    }
    if with_address:
        doc["address"] = address_of_private_key(secret).hex()
    return doc


def _decrypt(doc: dict[str, Any], password: Password, what: str) -> bytes:
    """Open a V3 keyfile (scrypt or pbkdf2-hmac-sha256, AES-128-CTR), checking its MAC."""
    try:
        crypto = doc.get("crypto") or doc["Crypto"]
        params = crypto["kdfparams"]
        salt = bytes.fromhex(params["salt"])
        if crypto["kdf"] == "scrypt":
            n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
            if not 2 <= n <= _MAX_SCRYPT_N or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16:
                raise KeystoreError(f"{what}: scrypt parameters out of range")
            derived = _scrypt(password.reveal(), salt, n, r, p, int(params["dklen"]))
        elif crypto["kdf"] == "pbkdf2" and params.get("prf") == "hmac-sha256":
            derived = hashlib.pbkdf2_hmac("sha256", password.reveal(), salt, int(params["c"]), int(params["dklen"]))
        else:
            raise KeystoreError(f"{what}: unsupported KDF {crypto['kdf']!r}")
        if crypto["cipher"] != "aes-128-ctr":
            raise KeystoreError(f"{what}: unsupported cipher {crypto['cipher']!r}")
        ciphertext = bytes.fromhex(crypto["ciphertext"])
        mac = bytes.fromhex(crypto["mac"])
        iv = bytes.fromhex(crypto["cipherparams"]["iv"])
    except (KeyError, TypeError, ValueError):
        raise KeystoreError(f"{what} is not a valid V3 keyfile") from None
    if not hmac.compare_digest(keccak(derived[16:32] + ciphertext), mac):
        raise KeystoreError(f"wrong keystore password (the MAC check of {what} failed)")
    return _aes_ctr(derived[:16], iv, ciphertext)


@dataclass(frozen=True)
class ServiceKeyInfo:
    """What the keystore says about a service key without decrypting it."""

    key_id: str
    alg: str
    public_key: bytes
    purposes: tuple[str, ...]
    created: int


@dataclass
class Keystore:
    """A keystore directory. Open it with :meth:`open` or :meth:`create`; :meth:`unlock` to sign."""

    path: Path
    meta: dict[str, Any]
    _password: Password | None = field(default=None, repr=False)
    _cache: dict[str, bytes] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"Keystore(path={str(self.path)!r}, unlocked={self._password is not None})"

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(
        cls, path: Path, password: Password, controllers: int = 1, threshold: int = 1, progress: Any = None
    ) -> Keystore:
        """An all-on-node keystore: ``controllers`` current and as many next (pre-rotation) keys.

        Development and single-machine mode only: whoever reads this directory with its password
        holds the whole subject. ``keyreg init`` defaults to :meth:`create_operator`.
        """
        if not 1 <= threshold <= controllers <= 16:
            raise KeystoreError(f"need 1 <= threshold ({threshold}) <= controllers ({controllers}) <= 16")
        cls._refuse_existing(path)
        ks = cls(
            path,
            {
                "version": KEYSTORE_VERSION,
                "mode": MODE_ALL_ON_NODE,
                "roles": ROLES[MODE_ALL_ON_NODE],
                "subject": None,
                "threshold": threshold,
                "generation": 0,
                "controllers": controllers,
            },
        )
        ks._password = password
        for gen in (0, 1):
            ks._make_generation(gen, progress)
        ks._save_meta()
        return ks

    @classmethod
    def create_operator(
        cls,
        path: Path,
        password: Password,
        purposes: tuple[str, ...],
        max_validity: int,
        max_keys: int,
        *,
        controllers: tuple[bytes, ...] = (),
        threshold: int = 1,
        next_commitment: bytes = b"",
        operator_secret: bytes | None = None,
    ) -> Keystore:
        """An operator-mode keystore: a fresh operator key (or ``operator_secret``), no controller.

        ``controllers``, ``threshold`` and ``next_commitment`` are the public facts of the subject's
        controllers, kept for display only; their keys are never written here.
        """
        if not purposes or max_validity < 1 or not 1 <= max_keys <= 1024:
            raise KeystoreError("operator policy: need purposes, maxValidity >= 1 s and 1 <= maxKeys <= 1024")
        cls._refuse_existing(path)
        secret = operator_secret if operator_secret is not None else os.urandom(32)
        policy = OperatorPolicy(address_of_private_key(secret), tuple(purposes), max_validity, max_keys)
        ks = cls(
            path,
            {
                "version": KEYSTORE_VERSION,
                "mode": MODE_OPERATOR,
                "roles": ROLES[MODE_OPERATOR],
                "subject": None,
                "threshold": threshold,
                "generation": 0,
                "controllers": len(controllers),
                "controllerAddresses": ["0x" + a.hex() for a in controllers],
                "nextCommitment": "0x" + next_commitment.hex() if next_commitment else None,
                "operator": policy.to_json(),
            },
        )
        ks._password = password
        f = ks._operator_file()
        _write_private(f, json.dumps(_encrypt(secret, password)).encode())
        ks._cache[str(f)] = secret
        ks._save_meta()
        return ks

    @staticmethod
    def _refuse_existing(path: Path) -> None:
        if (path / "keystore.json").exists():
            raise KeystoreError(f"a keystore already exists at {path}; refusing to overwrite it")
        _ensure_private_dir(path)
        os.chmod(path, 0o700)

    @classmethod
    def open(cls, path: Path) -> Keystore:
        """Open an existing keystore (still locked). Format 1 opens as all-on-node, with a warning."""
        meta_path = path / "keystore.json"
        if not meta_path.exists():
            raise KeystoreError(f"no keystore at {path}: run `keyreg init` first")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise KeystoreError(f"{meta_path} is unreadable: {exc}") from None
        if not isinstance(meta, dict):
            raise KeystoreError(f"{meta_path} is not a keystore description")
        version = meta.get("version")
        if version == LEGACY_VERSION:
            log.warning(
                "keystore %s is of format 1: it holds the controllers and their next generation on this "
                "node (all-on-node custody); whoever takes the node takes the subject. Move the controllers "
                "off the node with a rotation ceremony (docs/operations.md, Custody)",
                path,
            )
            meta = {**meta, "version": KEYSTORE_VERSION, "mode": MODE_ALL_ON_NODE, "roles": ROLES[MODE_ALL_ON_NODE]}
            meta["legacyFormat"] = LEGACY_VERSION
        elif version != KEYSTORE_VERSION:
            raise KeystoreError(f"{meta_path}: unsupported keystore version {version!r}")
        if meta.get("mode") not in ROLES:
            raise KeystoreError(f"{meta_path}: unknown custody mode {meta.get('mode')!r}")
        return cls(path, meta)

    def unlock(self, password: Password) -> Keystore:
        """Check the password against a keyfile the node holds and keep it for signing."""
        first = self._operator_file() if self.mode == MODE_OPERATOR else self._generation_files(self.generation)[0]
        self._cache[str(first)] = _decrypt(self._read(first), password, first.name)
        self._password = password
        return self

    @property
    def unlocked(self) -> bool:
        return self._password is not None

    def _require_password(self) -> Password:
        if self._password is None:
            raise KeystoreError("the keystore is locked: provide its password")
        return self._password

    def _save_meta(self) -> None:
        meta = {k: v for k, v in self.meta.items() if k != "legacyFormat"}
        _write_private(self.path / "keystore.json", json.dumps(meta, indent=2).encode())

    def reload(self) -> None:
        """Re-read metadata written by another process (the CLI while the node runs)."""
        self.meta = Keystore._meta_quiet(self.path)

    @staticmethod
    def _meta_quiet(path: Path) -> dict[str, Any]:
        # A reload must not repeat open()'s format-1 warning on every scheduler pass.
        was = log.disabled
        log.disabled = True
        try:
            return Keystore.open(path).meta
        finally:
            log.disabled = was

    # ------------------------------------------------------------------ custody

    @property
    def mode(self) -> str:
        return str(self.meta["mode"])

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(self.meta["roles"])

    @property
    def holds_controllers(self) -> bool:
        return self.mode == MODE_ALL_ON_NODE

    @property
    def legacy(self) -> bool:
        """Opened from format 1 (the file is rewritten as format 2, all-on-node, at the next save)."""
        return "legacyFormat" in self.meta

    def require_controllers(self, action: str) -> None:
        """Raise :class:`ControllersOffNode` unless this keystore holds the controllers."""
        if not self.holds_controllers:
            raise ControllersOffNode(
                f"{action} needs the subject's controllers, and this node holds only its operator key "
                f"(custody mode {self.mode!r}): {CEREMONY_HINT}"
            )

    def _operator_file(self) -> Path:
        return self.path / "operator" / "op-00.json"

    @property
    def operator_policy(self) -> OperatorPolicy | None:
        """The operator set this node signs under (operator mode), else None."""
        raw = self.meta.get("operator")
        return OperatorPolicy.from_json(raw) if raw else None

    def operator_secret(self) -> bytes:
        """The decrypted operator key (operator mode only)."""
        password = self._require_password()
        f = self._operator_file()
        if self.mode != MODE_OPERATOR or not f.exists():
            raise KeystoreError("this keystore holds no operator key (custody mode all-on-node)")
        if str(f) not in self._cache:
            self._cache[str(f)] = _decrypt(self._read(f), password, f.name)
        secret = self._cache[str(f)]
        policy = self.operator_policy
        if policy is None or address_of_private_key(secret) != policy.address:
            raise KeystoreError("the operator keyfile does not match the operator address in keystore.json")
        return secret

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        try:
            return dict(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise KeystoreError(f"cannot read {path.name}: {exc}") from None

    # ------------------------------------------------------------------ controllers

    @property
    def subject(self) -> bytes | None:
        s = self.meta.get("subject")
        return bytes.fromhex(s.removeprefix("0x")) if s else None

    def set_subject(self, subject: bytes) -> None:
        self.meta["subject"] = "0x" + subject.hex()
        self._save_meta()

    @property
    def threshold(self) -> int:
        return int(self.meta["threshold"])

    @property
    def generation(self) -> int:
        return int(self.meta["generation"])

    def _gen_dir(self, gen: int) -> Path:
        return self.path / "controllers" / f"gen-{gen:04d}"

    def _generation_files(self, gen: int) -> list[Path]:
        self.require_controllers("reading the controller keyfiles")
        files = sorted(self._gen_dir(gen).glob("ctrl-*.json"))
        if not files:
            raise KeystoreError(f"controller generation {gen} is missing from {self.path}")
        return files

    def _make_generation(self, gen: int, progress: Any = None) -> None:
        password = self._require_password()
        d = self._gen_dir(gen)
        if d.exists():  # left over from a controller rotation that was never accepted
            for f in d.glob("*.json"):
                f.unlink()
        _ensure_private_dir(d)
        for i in range(int(self.meta["controllers"])):
            secret = os.urandom(32)
            _write_private(d / f"ctrl-{i:02d}.json", json.dumps(_encrypt(secret, password)).encode())
            self._cache[str(d / f"ctrl-{i:02d}.json")] = secret
            if progress is not None:
                progress()

    def controller_addresses(self, gen: int) -> tuple[bytes, ...]:
        """Addresses of a generation, read from the keyfiles (no password needed)."""
        out = []
        for f in self._generation_files(gen):
            addr = self._read(f).get("address")
            if not isinstance(addr, str):
                raise KeystoreError(f"{f.name} has no address")
            out.append(bytes.fromhex(addr.removeprefix("0x")))
        return tuple(sorted(out))

    def controller_secrets(self, gen: int | None = None) -> list[bytes]:
        """Decrypted private keys of a generation (default: the current one); all-on-node only."""
        self.require_controllers("signing with the controllers")
        password = self._require_password()
        gen = self.generation if gen is None else gen
        out = []
        for f in self._generation_files(gen):
            key = str(f)
            if key not in self._cache:
                self._cache[key] = _decrypt(self._read(f), password, f.name)
            out.append(self._cache[key])
        if controller_set(out) != self.controller_addresses(gen):
            raise KeystoreError(f"controller generation {gen}: keyfile addresses do not match their keys")
        return out

    def rotation_seed(self) -> bytes:
        """The seed scheduled service keys derive from (docs/adr/0014-redundant-schedulers.md).

        A one-way function of the keys that sign the node's updates (the operator key; all-on-node:
        the current controllers): every node holding this keystore derives the same keys without
        another secret file to copy, a leaked service key reveals nothing of the signing keys, and
        a new operator key (or controller rotation) starts a fresh series.
        """
        if self.mode == MODE_OPERATOR:
            return hmac.new(self.operator_secret(), b"keyreg/rotation-seed/operator/v1", hashlib.sha256).digest()
        joined = b"".join(sorted(self.controller_secrets()))
        return hmac.new(joined, b"keyreg/rotation-seed/v1", hashlib.sha256).digest()

    def prepare_controller_rotation(self) -> tuple[list[bytes], tuple[bytes, ...]]:
        """(secrets of the next set, addresses of a fresh set after it): what a rotation needs."""
        nxt = self.controller_secrets(self.generation + 1)
        self._make_generation(self.generation + 2)
        return nxt, self.controller_addresses(self.generation + 2)

    def commit_controller_rotation(self) -> None:
        """Call after the rotation event was accepted: the next set becomes current."""
        self.meta["generation"] = self.generation + 1
        self._save_meta()

    # ------------------------------------------------------------------ service keys

    def _service_path(self, key_id: str) -> Path:
        return self.path / "service" / f"{key_id}.json"

    def add_service_key(self, key: ServiceKey, purposes: tuple[str, ...]) -> None:
        """Encrypt and store a service key."""
        password = self._require_password()
        doc = _encrypt(key.secret, password, with_address=False)  # an address means nothing for Ed25519/P-256
        doc["keyreg"] = {
            "kind": "service-key",
            "keyId": key.key_id,
            "alg": key.alg,
            "publicKey": "0x" + key.public_key.hex(),
            "purposes": list(purposes),
            "created": int(time.time()),
        }
        path = self._service_path(key.key_id)
        if path.exists():
            raise KeystoreError(f"service key {key.key_id!r} already exists")
        _write_private(path, json.dumps(doc, indent=1).encode())
        self._cache[str(path)] = key.secret

    def service_key_infos(self) -> list[ServiceKeyInfo]:
        """Every service key in the keystore (public data only), oldest first."""
        out = []
        for f in sorted((self.path / "service").glob("*.json")):
            meta = self._read(f).get("keyreg") or {}
            try:
                out.append(
                    ServiceKeyInfo(
                        meta["keyId"],
                        meta["alg"],
                        bytes.fromhex(meta["publicKey"].removeprefix("0x")),
                        tuple(meta["purposes"]),
                        int(meta["created"]),
                    )
                )
            except (KeyError, TypeError, ValueError):
                raise KeystoreError(f"{f.name} is not a keyreg service keyfile") from None
        return sorted(out, key=lambda i: (i.created, i.key_id))

    def service_key(self, key_id: str) -> ServiceKey:
        """Decrypt one service key."""
        password = self._require_password()
        path = self._service_path(key_id)
        if not path.exists():
            raise KeystoreError(f"no service key {key_id!r} in the keystore")
        doc = self._read(path)
        meta = doc.get("keyreg") or {}
        if str(path) not in self._cache:
            self._cache[str(path)] = _decrypt(doc, password, path.name)
        key = ServiceKey.from_secret(meta.get("alg", ""), self._cache[str(path)], key_id)
        if "0x" + key.public_key.hex() != meta.get("publicKey"):
            raise KeystoreError(f"service key {key_id!r}: stored public key does not match the private key")
        return key

    def has_service_key(self, key_id: str) -> bool:
        return self._service_path(key_id).exists()

    def iter_service_keys(self) -> Iterator[ServiceKey]:
        for info in self.service_key_infos():
            yield self.service_key(info.key_id)
