"""Ed25519 keys: making them, loading them, naming them (key id)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey



def raw_public(pub: Ed25519PublicKey) -> bytes:
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(pub: Ed25519PublicKey) -> bytes:
    return hashlib.sha256(raw_public(pub)).digest()[:4]


def load_public_key(path) -> Ed25519PublicKey:
    """A public key from PEM, or from a file holding the raw key in base64."""
    data = Path(path).read_bytes().strip()
    if data.startswith(b"-----"):
        key = serialization.load_pem_public_key(data)
    else:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data))
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError(f"{path}: not an Ed25519 public key")
    return key


def load_private_key(path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError(f"{path}: not an Ed25519 private key")
    return key


def new_keypair(directory, name: str) -> tuple[Path, Path]:
    """Write NAME.key (private, mode 0600) and NAME.pub; returns their paths."""
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


