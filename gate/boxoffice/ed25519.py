"""The reading half of the project's cryptography, on libsodium (PyNaCl): Ed25519 public keys and their
signatures (RFC 8032), and ChaCha20-Poly1305 with a 96-bit nonce (RFC 8439) for ticket-list bodies.

Signing, key making and certificates stay with `cryptography`, on the house and the box office. This module
is what a gate needs to check what others signed and to open what the box office sealed, and it keeps the
gate lean: on Raspberry Pi OS (Debian bookworm) python3-cryptography 38 loads its whole OpenSSL backend
(X.509, RSA, DSA, DH, EC...) as soon as any of its primitives is imported, about 5 MB resident in a process
that only verifies; libsodium does both jobs in about 1 MB. Both libraries follow the same RFCs, so what
one signs or seals the other reads (tests/test_signing.py crosses them). libsodium is the stricter verifier:
it also refuses non-canonical signatures and small-order keys, which no honest signer makes.

`VerifyKey` is the one public-key type the readers take; `verify_key()` turns a `cryptography` key (which the
house and the box office hold) into one, importing `cryptography` only then.

libsodium is called through PyNaCl's own cffi module (`nacl._sodium`, in every PyNaCl 1.x) rather than its
`nacl.bindings` wrappers: those load bindings for every primitive (about 1 MB more), and their
`crypto_sign_open` copies a signed message twice more on the way out. Here a verification holds the signed
message twice (libsodium's combined form wants signature + message in one buffer, and room to write the
message back): a 16 MB ticket list, the largest accepted, costs 32 MB for the moment it is checked.
"""

from __future__ import annotations

import base64
import binascii

from nacl._sodium import ffi as _ffi
from nacl._sodium import lib as _lib

if _lib.sodium_init() < 0:   # 0: initialised now, 1: already; -1: libsodium cannot run here
    raise ImportError("libsodium could not be initialised")
_scratch = _ffi.new_allocator(should_clear_after_alloc=False)   # buffers libsodium fills itself

KEY_BYTES = 32
SIG_BYTES = 64
NONCE_BYTES = 12
TAG_BYTES = 16
# DER of an Ed25519 SubjectPublicKeyInfo (RFC 8410): SEQUENCE { SEQUENCE { OID 1.3.101.112 } BIT STRING (32 bytes) }
SPKI_PREFIX = bytes.fromhex("302a300506032b6570032100")
PEM_BEGIN, PEM_END = b"-----BEGIN PUBLIC KEY-----", b"-----END PUBLIC KEY-----"


class BadSignature(Exception):
    """Not this key's signature of this message (or not a signature at all)."""


class BadSeal(Exception):
    """A sealed body that does not open: another key, another nonce, or altered."""


class VerifyKey:
    """An Ed25519 public key: 32 bytes. Equal and hashed by them."""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes):
        if not isinstance(raw, (bytes, bytearray)) or len(raw) != KEY_BYTES:
            raise ValueError(f"an Ed25519 public key is {KEY_BYTES} bytes")
        self.raw = bytes(raw)

    def verify(self, sig: bytes, message: bytes) -> None:
        """Returns if `sig` is this key's signature of `message`; raises BadSignature otherwise."""
        if not isinstance(sig, (bytes, bytearray, memoryview)) or len(sig) != SIG_BYTES:
            raise BadSignature("an Ed25519 signature is 64 bytes")
        if not isinstance(message, (bytes, bytearray, memoryview)):
            raise BadSignature("only bytes are signed")
        signed = bytes(sig) + bytes(message)
        out = _scratch("unsigned char[]", len(signed))
        out_len = _ffi.new("unsigned long long *")
        if _lib.crypto_sign_open(out, out_len, signed, len(signed), self.raw) != 0:
            raise BadSignature("signature does not verify")

    def __eq__(self, other) -> bool:
        return isinstance(other, VerifyKey) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"VerifyKey({self.raw[:4].hex()}...)"


def verify_key(key) -> VerifyKey:
    """`key` as a VerifyKey: one already, its 32 raw bytes, or a `cryptography` Ed25519 public or private key."""
    if isinstance(key, VerifyKey):
        return key
    if isinstance(key, (bytes, bytearray)):
        return VerifyKey(bytes(key))
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    if isinstance(key, ed25519.Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise ValueError("not an Ed25519 key")
    return VerifyKey(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))


def from_pem(data: bytes) -> VerifyKey:
    """An Ed25519 public key from PEM (`-----BEGIN PUBLIC KEY-----`, SubjectPublicKeyInfo, RFC 7468 and 8410).
    Explanatory text around the block is allowed (RFC 7468 section 2); exactly one such block, whose base64
    decodes to exactly an Ed25519 key. Anything else is a ValueError."""
    lines = [line.strip() for line in data.splitlines()]
    if lines.count(PEM_BEGIN) != 1 or lines.count(PEM_END) != 1 or lines.index(PEM_END) < lines.index(PEM_BEGIN) + 2:
        raise ValueError("not a PEM public key (one -----BEGIN PUBLIC KEY----- ... -----END PUBLIC KEY----- block)")
    body = lines[lines.index(PEM_BEGIN) + 1:lines.index(PEM_END)]
    try:
        der = base64.b64decode(b"".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a PEM public key whose body is not base64") from None
    if len(der) != len(SPKI_PREFIX) + KEY_BYTES or not der.startswith(SPKI_PREFIX):
        raise ValueError("not an Ed25519 public key")
    return VerifyKey(der[len(SPKI_PREFIX):])


def seal(key: bytes, nonce: bytes, plaintext: bytes) -> bytes:
    """ChaCha20-Poly1305 (RFC 8439) of `plaintext` under the 32-byte `key` and 12-byte `nonce`: ciphertext + tag."""
    if len(nonce) != NONCE_BYTES or len(key) != KEY_BYTES:
        raise ValueError("ChaCha20-Poly1305 takes a 32-byte key and a 12-byte nonce")
    plaintext = bytes(plaintext)
    out = _scratch("unsigned char[]", len(plaintext) + TAG_BYTES)
    out_len = _ffi.new("unsigned long long *")
    if _lib.crypto_aead_chacha20poly1305_ietf_encrypt(out, out_len, plaintext, len(plaintext), _ffi.NULL, 0, _ffi.NULL,
                                                       bytes(nonce), bytes(key)) != 0:
        raise RuntimeError("libsodium could not seal")
    return _ffi.buffer(out, out_len[0])[:]


def open_sealed(key: bytes, nonce: bytes, sealed: bytes) -> bytes:
    """The plaintext of `seal(key, nonce, ...)`; BadSeal when it does not open."""
    if (not isinstance(sealed, (bytes, bytearray, memoryview)) or len(sealed) < TAG_BYTES
            or len(nonce) != NONCE_BYTES or len(key) != KEY_BYTES):
        raise BadSeal("not a sealed body")
    sealed = bytes(sealed)
    out = _scratch("unsigned char[]", max(1, len(sealed) - TAG_BYTES))
    out_len = _ffi.new("unsigned long long *")
    if _lib.crypto_aead_chacha20poly1305_ietf_decrypt(out, out_len, _ffi.NULL, sealed, len(sealed), _ffi.NULL, 0,
                                                       bytes(nonce), bytes(key)) != 0:
        raise BadSeal("the body does not open under the venue secret")
    return _ffi.buffer(out, out_len[0])[:]
