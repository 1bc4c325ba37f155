"""Key material: Ed25519 key pairs (making, loading, naming them by key id) and the venue secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from pathlib import Path
from typing import TYPE_CHECKING

from gate.boxoffice.ed25519 import VerifyKey, from_pem, verify_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# Public keys are read with gate/boxoffice/ed25519.py (a gate only ever reads them); making and loading private
# keys is `cryptography`'s, imported where it is done (the house and the box office).


def raw_public(pub) -> bytes:
    """The 32 bytes of an Ed25519 public key (a VerifyKey, or a `cryptography` public or private key)."""
    return verify_key(pub).raw


def key_id(pub) -> bytes:
    """The 4 bytes a signed code or list names its key by (several keys may be valid: rotation)."""
    return hashlib.sha256(raw_public(pub)).digest()[:4]


def keyring(public_keys) -> dict[bytes, VerifyKey]:
    """key id -> key, for every verifier of signed codes and lists (VerifyKeys, or `cryptography` keys)."""
    ring: dict[bytes, VerifyKey] = {}
    for k in public_keys:
        vk = verify_key(k)
        kid = key_id(vk)
        if ring.setdefault(kid, vk).raw != vk.raw:   # `gate config check` names the two files
            raise ValueError(f"two different keys share the key id {kid.hex()}: one of them could never be checked")
    return ring


def load_public_key(path) -> VerifyKey:
    """A public key from PEM, or from a file holding the raw key in base64."""
    data = Path(path).read_bytes().strip()
    try:
        if data.startswith(b"-----"):
            return from_pem(data)
        return VerifyKey(base64.b64decode(data, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"{path}: not an Ed25519 public key ({exc})") from None


def load_private_key(path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def new_keypair(directory, name: str) -> tuple[Path, Path]:
    """Write NAME.key (private, mode 0600) and NAME.pub; returns their paths."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    priv = Ed25519PrivateKey.generate()
    kp, pp = d / f"{name}.key", d / f"{name}.pub"
    if kp.exists():
        raise FileExistsError(f"{kp} exists; refusing to overwrite a signing key")
    kp.touch(mode=0o600)
    kp.write_bytes(priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    pp.write_bytes(priv.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return kp, pp




# -- the venue secret --------------------------------------------------------------
# 32 random bytes shared by the box office, the house and the gates, and by nobody
# else: ticket codes in a list are keyed hashes under it and the list's body is
# encrypted to it, so a party that can read the retained list but does not hold it
# learns neither codes nor names (see gate/boxoffice/lists.py).

SECRET_BYTES = 32


def new_secret(directory, name: str) -> Path:
    """Write NAME.secret (base64 of 32 random bytes, mode 0600); returns its path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    p = d / f"{name}.secret"
    if p.exists():
        raise FileExistsError(f"{p} exists; refusing to overwrite the venue secret")
    p.touch(mode=0o600)
    p.write_text(base64.b64encode(os.urandom(SECRET_BYTES)).decode() + "\n")
    return p


def load_secret(path) -> bytes:
    """The venue secret from its file; ValueError when it is not 32 bytes of base64."""
    try:
        raw = base64.b64decode(Path(path).read_bytes().strip(), validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(f"{path}: not base64 (make one with: gate keys new --secret)") from None
    if len(raw) != SECRET_BYTES:
        raise ValueError(f"{path}: a venue secret is {SECRET_BYTES} bytes, this one is {len(raw)}")
    return raw


def derive(secret: bytes, label: bytes, salt: bytes = b"") -> bytes:
    """A 32-byte key for one purpose (label) from the venue secret: HMAC-SHA256 as the KDF,
    so the code-hash key, the list-encryption key and the reference key never coincide."""
    return hmac.new(secret, b"gate/" + label + b"\x00" + salt, hashlib.sha256).digest()
