"""[signing]: the keys that sign and verify tickets, ticket lists, staff cards, and the venue secret.

Only paths here, never a key itself; each file must load now, not when the first ticket needs it."""

from __future__ import annotations

from dataclasses import dataclass, field

from gate.config.rules import Fail, secret_file_problem

# Keys that were renamed: the loader says where they went instead of "unknown key".
RENAMED = {"public_keys": "renamed: GT1 ticket keys are now signing.ticket_keys (ticket lists: signing.list_keys)"}


@dataclass
class SigningSection:
    ticket_keys: list[str] = field(default_factory=list)  # gates: public keys (files) that sign GT1 tickets
    list_keys: list[str] = field(default_factory=list)    # gates, house: public keys that sign ticket lists
    list_signing_key: str = ""       # publishers (house, box office): private key that signs ticket lists
    staff_key: str = ""              # box office: private key that signs staff cards and venue control messages
    venue_secret: str = ""           # file: the venue secret (code hashes, list encryption); gates, house, box office
    staff_keys: list[str] = field(default_factory=list)   # gates, house: public keys that sign staff cards
                                                          # and venue control messages
    legacy_tickets_until: str = ""   # gates: ISO time until which GT1 tickets signed in the old format
                                     # (before signatures named their purpose) are still admitted; "" = never


def check(cfg, fail: Fail) -> None:
    """Every key file a key names loads now, as what the key says it is."""
    from gate.boxoffice.keys import key_id, load_private_key, load_public_key, load_secret, raw_public
    s = cfg.signing
    ids: dict[str, dict[bytes, tuple[str, bytes]]] = {}   # per key: key id -> (file, raw key)
    # pretix's keys come in other forms (base64 of PEM): gate/config/pretix.py loads those.
    for key, paths in (("signing.ticket_keys", s.ticket_keys), ("signing.list_keys", s.list_keys),
                       ("signing.staff_keys", s.staff_keys)):
        named = ids[key] = {}
        for p in paths:
            try:
                pub = load_public_key(p)
            except IsADirectoryError:
                fail(key, f"{p} is a directory, not a key file")
            except FileNotFoundError:
                fail(key, f"{p} does not exist")
            except PermissionError:
                fail(key, f"{p} is not readable by this user")
            except OSError as exc:
                fail(key, f"cannot read {p}: {exc.strerror or exc}")
            except (ValueError, TypeError, UnicodeDecodeError):
                fail(key, f"{p} holds no Ed25519 public key (make one with `gate keys new`)")
            else:
                kid = key_id(pub)
                first = named.setdefault(kid, (p, pub.raw))
                if first[1] != pub.raw:
                    fail(key, _same_id(first[0], str(p), kid))
    for key, path, load, what in (
            ("signing.list_signing_key", s.list_signing_key, load_private_key,
             "no Ed25519 private key (make one with `gate keys new`)"),
            ("signing.staff_key", s.staff_key, load_private_key,
             "no Ed25519 private key (make one with `gate keys new`)"),
            ("signing.venue_secret", s.venue_secret, load_secret,
             "no venue secret (make one with `gate keys new --secret`)")):
        if not path:
            continue
        problem = secret_file_problem(path)
        if problem:
            fail(key, problem)
        try:
            loaded = load(path)
        except (OSError, ValueError, TypeError, UnicodeDecodeError):
            fail(key, f"{path} holds {what}")
            continue
        if key == "signing.list_signing_key":   # the house and the box office check lists under it too
            listed = ids["signing.list_keys"].get(key_id(loaded))
            if listed is not None and listed[1] != raw_public(loaded):
                fail(key, _same_id(f"{listed[0]} (signing.list_keys)", f"the public key of {path}", key_id(loaded)))
    if (s.list_keys or s.list_signing_key) and not s.venue_secret:
        fail("signing.venue_secret", "ticket lists carry code hashes and encrypted names under the venue secret: "
                                     "set it (make it with `gate keys new --secret --out DIR --name venue`)")
    check_legacy_tickets(s.legacy_tickets_until, fail)


def _same_id(first: str, second: str, kid: bytes) -> str:
    return (f"{first} and {second} are different keys with the same key id ({kid.hex()}): a signed code or list "
            "names its key by that id, so one of them could never be checked; make a new key pair for one of them "
            "(gate keys new)")


LEGACY_MAX_DAYS = 366


def check_legacy_tickets(until: str, fail: Fail) -> None:
    """`signing.legacy_tickets_until`: an ISO time, at most a year ahead (a grace, not a way of life)."""
    if not until:
        return
    import time

    from gate.boxoffice.ticketfile import parse_time
    try:
        t = parse_time(until) // 1000
    except ValueError:
        fail("signing.legacy_tickets_until", f"{until!r} is not an ISO 8601 date or time (e.g. 2026-12-31T23:59)")
    if t > time.time() + LEGACY_MAX_DAYS * 86400:
        fail("signing.legacy_tickets_until", f"at most {LEGACY_MAX_DAYS} days ahead: re-issue old-format tickets "
                                             "with `gate tickets issue` before then")
