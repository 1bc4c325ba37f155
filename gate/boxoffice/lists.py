"""Ticket lists as they travel over MQTT: signed, encrypted, hashed, bounded to decode.

A list is retained on gate/<venue>/tickets, where anyone allowed to read that
topic can fetch it and anyone on the bus may try to publish one. So:

- it is **signed** (Ed25519) by the publisher's `list_signing_key` and names the
  key by its key id; a gate applies it only when the key is one of its
  `list_keys` (several may be valid at once: rotation);
- it carries **no ticket code**: each code is HMAC-SHA256 under a key derived
  from the venue secret and the list's random salt, truncated to 16 bytes. A
  reader without the venue secret cannot test guesses, however short the codes
  (a 6-digit code has only 10^6 values: an unkeyed or merely slow hash of it
  falls to a laptop in minutes);
- names, seats, tags, notes and patron ids are **encrypted** to the venue
  secret (the whole body, ChaCha20-Poly1305), so only gates and the house read
  them;
- it is **versioned** by the publisher's series id and sequence number, plus
  an issuance time used only between series (see `judge`);
- it is **decoded within fixed bounds**: a size cap on the envelope, msgpack's
  own length limits, streaming decompression with a cap on the expanded size,
  declared and checked object counts, and every value checked.

Wire format (msgpack):

    envelope  {"v": 2, "key": bin(4), "sig": bin(64), "signed": bin}
    signed    {"venue", "series", "seq", "issued", "salt": bin(16),
               "tickets": n, "revoked": m, "body": bin[, "pretix": bin][, "staff": bin]}
    pretix    JSON {"event": slug, "keys": [pretix_sig1 public keys]}: public, so outside the body
    staff     revoked staff cards, 12 bytes each: card id (8) + until (4 BE unix seconds: the
              revocation can be forgotten then, the card has expired). Gates keep every one they
              see until then, whichever publisher's list brought it. Receivers from before
              ignore the key (they ignore unknown keys), so such lists still reach them.
    body      ChaCha20-Poly1305(derive(secret, "list body", salt), nonce salt[:12]) of
              zlib(n ticket rows, then m revoked ticket ids, as one msgpack stream)
    row       [ticket_id, code_hash bin(16), event, holder, seat, zone,
               valid_from ms|nil, valid_until ms|nil, status, "tag;tag", note, patron]

The signature covers SIGNED_PREFIX + signed, the ticket list's purpose string
(gate/boxoffice/purpose.py), so no ticket, card or control signature passes as a list;
the venue inside `signed` keeps another venue's list out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Optional

import msgpack

from gate.boxoffice.ed25519 import BadSeal, VerifyKey, open_sealed, seal
from gate.boxoffice.keys import derive, key_id
from gate.boxoffice.purpose import TICKET_LIST, context, verifies
from gate.boxoffice.revokedcards import pack_staff, unpack_staff
from gate.core.clock import now_ms
from gate.core.errors import PayloadError
from gate.core.events import Ticket
from gate.core.ids import is_id

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SIGNED_PREFIX = context(TICKET_LIST)   # b"gate ticket list v2\x00", as lists have always been signed
MAX_LIST_BYTES = 16 * 1024 * 1024      # the envelope as it arrives (about 150,000 tickets)
MAX_BODY_BYTES = 64 * 1024 * 1024      # the body once expanded
MAX_TICKETS = 250_000
MAX_REVOKED = 250_000
MAX_SEQ = 2 ** 53                      # exact in JSON and in every language that reads health
TIME_MIN, TIME_MAX = 946_684_800_000, 4_102_444_800_000   # 2000-01-01 .. 2100-01-01, unix ms
MAX_ID, MAX_EVENT, MAX_FIELD = 256, 128, 4096
HASH_BYTES, SALT_BYTES = 16, 16
STATUSES = ("valid", "revoked", "blocked")
MAX_PRETIX = 64 * 1024                 # the pretix event's slug and keys (JSON), from a house synced with pretix
CHUNK = 64 * 1024


@dataclass(frozen=True)
class ListHeader:
    """What a verified list says about itself."""
    venue: str
    series: str        # the publisher's id: its sequence numbers count within it
    seq: int           # the publisher's persisted counter, 1, 2, 3, ...
    issued: int        # the publisher's clock when it signed, unix ms (used only between series)
    key: str           # hex key id of the key that signed it
    tickets: int
    revoked: int
    staff_revoked: tuple = ()   # ((card id hex, until unix s), ...): revoked staff cards


# -- hashing codes ----------------------------------------------------------------

def code_key(secret: bytes, salt: bytes) -> bytes:
    """The key a list's code hashes are under (one per list: its salt)."""
    return derive(secret, b"list codes", salt)


def code_hash(key: bytes, code: str) -> bytes:
    """What a list and a gate's store hold instead of the code: HMAC-SHA256, 16 bytes."""
    return code_hasher(key)(code)


def code_hasher(key: bytes):
    """code_hash with the key set up once (a scan pays for one HMAC, not for its key schedule)."""
    keyed = hmac.new(key, digestmod=hashlib.sha256)

    def h(code: str) -> bytes:
        mac = keyed.copy()
        mac.update(code.encode("utf-8", "surrogateescape"))
        return mac.digest()[:HASH_BYTES]
    return h


# -- publishing ---------------------------------------------------------------------

def pack_list(tickets: Iterable[Ticket], revoked: Iterable[str] = (), *, signing_key: Ed25519PrivateKey,
              secret: bytes, venue: str, series: str, seq: int, issued_ms: Optional[int] = None,
              pretix: Optional[str] = None, staff_revoked: Iterable[tuple[str, int]] = ()) -> bytes:
    """A signed ticket list, ready to publish retained on gate/<venue>/tickets.

    tickets: every ticket (with its `code`), revoked: ids the box office cancelled,
    signing_key: the publisher's `list_signing_key`, secret: the venue secret (32 bytes),
    series/seq: the publisher's id and its next sequence number (strictly increasing
    within the series; `gate.boxoffice.publish.ListPublisher` keeps both on disk),
    issued_ms: the publisher's clock (default now), pretix: the pretix event's slug and valid
    keys as JSON (a house synced with pretix; gates verify pretix_sig1 with them), staff_revoked: revoked
    staff cards (card id, until). Raises ValueError on values a gate would refuse, so a bad list fails at
    the box office and not on every gate.
    """
    if not is_id(venue):
        raise ValueError("venue must be 1-64 of [A-Za-z0-9_-]")
    issued = _check_order(series, seq, issued_ms)
    salt = os.urandom(SALT_BYTES)
    hashed = code_hasher(code_key(secret, salt))
    stream, packer = bytearray(), msgpack.Packer(use_bin_type=True)
    comp = zlib.compressobj(6)
    out, n, m = [], 0, 0
    ids, codes = set(), set()
    for t in tickets:
        if t.ticket_id == t.code:
            raise ValueError(f"ticket {t.ticket_id!r}: its id is its code, and ids travel in clear in scan events")
        row = [t.ticket_id, hashed(t.code), t.event, t.holder, t.seat, t.zone, t.valid_from,
               t.valid_until, t.status, ";".join(t.tags), t.note, t.patron]
        check_row(row)
        if t.ticket_id in ids or row[1] in codes:   # every gate would refuse the whole list
            raise ValueError(f"ticket {t.ticket_id!r}: its id or its code is on the list twice")
        ids.add(t.ticket_id)
        codes.add(row[1])
        stream += packer.pack(row)
        n += 1
        if len(stream) > CHUNK:
            out.append(comp.compress(bytes(stream)))
            stream.clear()
    for r in sorted(set(revoked)):
        check_text(r, MAX_ID, "revoked id")
        stream += packer.pack(r)
        m += 1
    if n > MAX_TICKETS or m > MAX_REVOKED:
        raise ValueError(f"a list holds at most {MAX_TICKETS:,} tickets and {MAX_REVOKED:,} revoked ids")
    out.append(comp.compress(bytes(stream)))
    out.append(comp.flush())
    body = seal(derive(secret, b"list body", salt), salt[:12], b"".join(out))
    header = {"venue": venue, "series": series, "seq": seq, "issued": issued, "salt": salt,
              "tickets": n, "revoked": m, "body": body}
    if pretix is not None:
        if len(pretix.encode()) > MAX_PRETIX:
            raise ValueError("pretix keys and slug too long")
        header["pretix"] = pretix.encode()
    return _seal(header, signing_key, staff_revoked)


def resign(inner: dict, *, signing_key: Ed25519PrivateKey, series: str, seq: int,
           staff_revoked: Iterable[tuple[str, int]], issued_ms: Optional[int] = None) -> bytes:
    """A verified list's content (`verify_list`'s signed map) again, signed as the next list of this
    publisher's series with these revoked staff cards: `gate staff revoke` reaches every gate in
    seconds without the tickets themselves (the body, its salt and code hashes stay as they were)."""
    header = {k: inner[k] for k in ("venue", "salt", "tickets", "revoked", "body", "pretix") if k in inner}
    header.update(series=series, seq=seq, issued=_check_order(series, seq, issued_ms))
    return _seal(header, signing_key, staff_revoked)


def _check_order(series: str, seq: int, issued_ms: Optional[int]) -> int:
    if not is_id(series):
        raise ValueError("series must be 1-64 of [A-Za-z0-9_-]")
    if not 1 <= seq < MAX_SEQ:
        raise ValueError(f"seq must be 1 .. 2^53-1, got {seq}")
    issued = now_ms() if issued_ms is None else issued_ms
    if not TIME_MIN <= issued < TIME_MAX:
        raise ValueError(f"issued time out of range: {issued}")
    return issued


def _seal(header: dict, signing_key: Ed25519PrivateKey, staff_revoked: Iterable[tuple[str, int]]) -> bytes:
    staff = pack_staff(staff_revoked)
    if staff:
        header["staff"] = staff
    signed = msgpack.packb(header, use_bin_type=True)
    envelope = msgpack.packb({"v": 2, "key": key_id(signing_key.public_key()),
                              "sig": signing_key.sign(SIGNED_PREFIX + signed), "signed": signed},
                             use_bin_type=True)
    if len(envelope) > MAX_LIST_BYTES:
        raise ValueError(f"the list is {len(envelope):,} bytes packed; gates accept at most {MAX_LIST_BYTES:,}")
    return envelope


# -- receiving ------------------------------------------------------------------------

def _unpack(data: bytes, **limits):
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, max_ext_len=0, **limits)
    except Exception as exc:  # ValueError, ExtraData, FormatError, StackError, UnicodeDecodeError
        raise PayloadError("bad_msgpack", type(exc).__name__) from None


def verify_list(data, keys: dict[bytes, VerifyKey]) -> tuple[ListHeader, dict]:
    """Check the envelope's signature before looking at anything inside it.

    keys: key id -> public key (see `keyring`). Returns the header and the signed
    map (for `read_body`); raises PayloadError whose kind says why: `oversized`,
    `unsigned` (not a v2 envelope: an old or forged list), `unknown_key`,
    `bad_signature`, `bad_field`."""
    if not isinstance(data, (bytes, bytearray)):
        raise PayloadError("bad_field", "not bytes")
    if len(data) > MAX_LIST_BYTES:
        raise PayloadError("oversized", f"{len(data):,} bytes")
    env = _unpack(bytes(data), max_bin_len=MAX_LIST_BYTES, max_str_len=16, max_map_len=8, max_array_len=8)
    if type(env) is not dict or env.get("v") != 2 or not isinstance(env.get("signed"), bytes):
        raise PayloadError("unsigned", "not a signed list")
    kid, sig, signed = env.get("key"), env.get("sig"), env["signed"]
    if not isinstance(kid, bytes) or not isinstance(sig, bytes) or len(sig) != 64:
        raise PayloadError("unsigned", "no key id or signature")
    pub = keys.get(kid)
    if pub is None:
        raise PayloadError("unknown_key", f"signed by key {kid.hex()[:16]}, not one of list_keys")
    if not verifies(pub, sig, TICKET_LIST, signed):
        raise PayloadError("bad_signature", f"key {kid.hex()}")
    inner = _unpack(signed, max_bin_len=MAX_LIST_BYTES, max_str_len=64, max_map_len=16, max_array_len=0)
    if type(inner) is not dict:
        raise PayloadError("bad_field", "signed part")
    venue, series, seq, issued = inner.get("venue"), inner.get("series"), inner.get("seq"), inner.get("issued")
    n, m, salt, body = inner.get("tickets"), inner.get("revoked"), inner.get("salt"), inner.get("body")
    if not (is_id(venue) and is_id(series)):
        raise PayloadError("bad_field", "venue/series")
    if not (type(seq) is int and 1 <= seq < MAX_SEQ and type(issued) is int and TIME_MIN <= issued < TIME_MAX):
        raise PayloadError("bad_field", "seq/issued")
    if not (type(n) is int and 0 <= n <= MAX_TICKETS and type(m) is int and 0 <= m <= MAX_REVOKED):
        raise PayloadError("bad_field", "counts")
    if not (type(salt) is bytes and len(salt) == SALT_BYTES and type(body) is bytes):
        raise PayloadError("bad_field", "salt/body")
    pretix = inner.get("pretix")
    if pretix is not None and not (type(pretix) is bytes and len(pretix) <= MAX_PRETIX):
        raise PayloadError("bad_field", "pretix")
    return ListHeader(venue, series, seq, issued, kid.hex(), n, m, unpack_staff(inner.get("staff"))), inner


def read_body(inner: dict, secret: bytes, revoked_out: list) -> Iterator[tuple]:
    """Yield the ticket rows of a verified list one at a time, then fill `revoked_out`.

    Memory stays bounded whatever the body holds (decompressed in chunks, one
    row decoded at a time); raises PayloadError on the first bad value, so a
    caller inserting rows in a transaction rolls the whole list back."""
    salt = inner["salt"]
    try:
        blob = open_sealed(derive(secret, b"list body", salt), salt[:12], inner["body"])
    except BadSeal:
        raise PayloadError("wrong_venue_secret", "cannot decrypt: this venue secret is not the publisher's") from None
    objects = _stream(blob)
    for _ in range(inner["tickets"]):
        yield tuple(check_row(next(objects, None)))
    for _ in range(inner["revoked"]):
        r = next(objects, None)
        check_text(r, MAX_ID, "revoked id")
        revoked_out.append(r)
    if next(objects, None) is not None:
        raise PayloadError("bad_field", "more objects than declared")


def _stream(blob: bytes) -> Iterator:
    """msgpack objects from a zlib stream, never holding more than a few chunks expanded."""
    d = zlib.decompressobj()
    u = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=8 * CHUNK, max_str_len=4 * MAX_FIELD,
                         max_bin_len=HASH_BYTES, max_array_len=12, max_map_len=0, max_ext_len=0)
    total, pos = 0, 0
    try:
        while True:
            if d.unconsumed_tail:
                piece = d.decompress(d.unconsumed_tail, CHUNK)
            elif pos < len(blob):
                piece = d.decompress(blob[pos:pos + CHUNK], CHUNK)
                pos += CHUNK
            elif d.eof:
                break
            else:
                piece = d.decompress(b"", CHUNK)   # output zlib may still hold back
                if not piece:
                    break
            total += len(piece)
            if total > MAX_BODY_BYTES:
                raise PayloadError("oversized", "the list body expands too far")
            u.feed(piece)
            yield from u
        if not d.eof or d.unused_data:
            raise PayloadError("bad_zlib", "truncated or trailing data")
    except zlib.error as exc:
        raise PayloadError("bad_zlib", str(exc)) from None
    except PayloadError:
        raise
    except Exception as exc:  # BufferFull, FormatError, StackError, UnicodeDecodeError, ...
        raise PayloadError("bad_msgpack", type(exc).__name__) from None


def check_text(v, limit: int, what: str, empty: bool = False) -> None:
    if type(v) is not str or len(v) > limit or (not v and not empty):
        raise PayloadError("bad_field", what)
    if any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise PayloadError("bad_field", f"{what}: control characters")


def check_row(row: object) -> list:
    """One ticket row, checked by value (the store and the scan events take these as they are);
    returns it, now known to be a list."""
    if type(row) is not list or len(row) != 12:
        raise PayloadError("bad_field", "ticket row")
    tid, h, event, holder, seat, zone, vf, vu, status, tags, note, patron = row
    check_text(tid, MAX_ID, "ticket_id")
    check_text(event, MAX_EVENT, "event")
    if type(h) is not bytes or len(h) != HASH_BYTES:
        raise PayloadError("bad_field", "code hash")
    for name, v in (("holder", holder), ("seat", seat), ("zone", zone), ("tags", tags), ("note", note),
                    ("patron", patron)):
        if type(v) is not str or len(v) > MAX_FIELD:
            raise PayloadError("bad_field", name)
    for name, v in (("valid_from", vf), ("valid_until", vu)):
        if v is not None and not (type(v) is int and TIME_MIN <= v < TIME_MAX):
            raise PayloadError("bad_field", name)
    if status not in STATUSES:
        raise PayloadError("bad_field", "status")
    return row


def row_ticket(row: tuple) -> Ticket:
    """A list row as the store's Ticket (no code: only its hash exists)."""
    tid, _h, event, holder, seat, zone, vf, vu, status, tags, note, patron = row
    return Ticket(tid, event, "", holder, seat, zone, vf, vu, status, tuple(t for t in tags.split(";") if t),
                  note, patron)


# -- which list wins ---------------------------------------------------------------------
# An attacker cannot sign, but can replay any list ever signed, for ever; a
# publisher's clock can be wrong. So:
#  1. within a series (one publisher's persisted counter) only the sequence
#     number counts: a list is new when its seq is above every seq this gate
#     has applied from that series. No clock is involved, so a publisher whose
#     clock ran ahead and was put back is still accepted; a replayed older list
#     never is;
#  2. between series (the house and the box office, or a publisher that lost its
#     counter file and started a new series) the issuance time decides, but the
#     current list counts as issued no later than the moment this gate applied
#     it: a list stamped a year ahead cannot shut out the next publisher;
#  3. between series, a gate with a synchronised clock refuses a list issued more
#     than MAX_AHEAD_MS in its future (a broken publisher clock), so such a list
#     cannot be replayed later to roll a gate back. Its own series still flows (1).
MAX_AHEAD_MS = 10 * 60 * 1000


def judge(h: ListHeader, seen_seq: Optional[int], current: dict, now_ms: int, clock_trusted: bool = True
          ) -> Optional[str]:
    """None when the list is to be applied, else why it is ignored: `current` (the same
    list again, as on every reconnect), `replayed`, `from_the_future`, `superseded`.

    seen_seq: the highest seq applied from h.series (None: never); current: the
    applied list's {series, seq, issued, effective} ({} when none)."""
    if seen_seq is not None and h.seq <= seen_seq:
        return "current" if h.seq == seen_seq else "replayed"
    if not current or h.series == current["series"]:
        return None
    if clock_trusted and h.issued > now_ms + MAX_AHEAD_MS:
        return "from_the_future"
    return None if h.issued > current["effective"] else "superseded"
