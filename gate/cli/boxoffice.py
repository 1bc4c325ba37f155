"""The box office's commands: `gate tickets import|issue`, `gate keys new`, `gate staff issue|revoke`,
`gate venue live|test`. The work is done in gate/boxoffice/; these say what each command takes
and what it answers."""

from __future__ import annotations

from pathlib import Path

from gate.cli.exits import OK, BadUsage, CommandFailed
from gate.core.errors import TicketFileError


def tickets_import(args) -> int:
    """`gate tickets import -c FILE TICKETS`: into this gate's store, or (--publish) signed to every gate."""
    from gate.boxoffice.ticketfile import read_ticket_file
    from gate.config import load
    from gate.core.progress import Progress
    from gate.core.storage import GateFiles
    from gate.state.tickets import TicketStore
    cfg = load(args.config)
    p = Progress(f"reading {args.tickets}")
    tickets = read_ticket_file(args.tickets, progress=p)
    revoked = [t.ticket_id for t in tickets if t.status == "revoked"]
    if args.revoke:
        try:
            text = Path(args.revoke).read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise BadUsage(f"{args.revoke}: not a text file of ticket ids ({exc.reason})") from exc
        revoked += [l.strip() for l in text.splitlines() if l.strip()]
    p.done(f"{len(tickets):,} tickets")
    if not tickets and not args.allow_empty:
        # A header-only export is far more often a failed export than an empty house.
        raise TicketFileError(args.tickets, 2, "", "no tickets in the file: importing it would empty the "
                              "gate's list; pass --allow-empty if that is what you want")
    if args.publish:
        from gate.boxoffice.publish import ListPublisher
        from gate.bus import topics
        pub = ListPublisher.from_config(cfg, role="boxoffice")
        try:
            payload = pub.pack(tickets, revoked)
        except ValueError as exc:   # a value no gate would accept: say so here, not on every gate
            raise BadUsage(f"{args.tickets}: {exc}") from exc
        pub.publish(payload)        # raises BusError/GateError saying why
        series, seq = pub.last
        print(f"published {len(tickets):,} tickets ({len(payload):,} bytes, signed, list {series}/{seq}) "
              f"to {topics.tickets(cfg.venue)}")
        return OK
    store = TicketStore(GateFiles.of(cfg.storage.dir).tickets)
    version = store.replace_all(tickets, revoked)
    store.close()
    print(f"imported {len(tickets):,} tickets into {cfg.storage.dir} (data version {version})")
    return OK


def tickets_issue(args) -> int:
    """`gate tickets issue`: mint signed ticket codes, a CSV and a QR PNG each."""
    from gate.boxoffice.issue import issue
    try:
        return issue(args)
    except ValueError as exc:   # a key that is not an Ed25519 private key, a bad --valid-from/--valid-until
        raise BadUsage(f"tickets issue: {exc}") from exc


def staff_issue(args) -> int:
    """`gate staff issue`: a signed staff card (QR PNG) per action, for one venue, with an end."""
    from gate.boxoffice.staffcards import issue_staff
    from gate.config import load
    venue = args.venue or (load(args.config).venue if args.config else "")
    if not venue:
        raise BadUsage("staff issue: a card is signed for one venue: give -c CONFIG or --venue VENUE")
    try:
        return issue_staff(args, venue)
    except ValueError as exc:   # a key that is not an Ed25519 private key, a bad --valid-until/--valid-days
        raise BadUsage(f"staff issue: {exc}") from exc


def staff_revoke(args) -> int:
    """`gate staff revoke`: revoked cards recorded, and on every gate within seconds (the signed list)."""
    from gate.boxoffice.staffcards import revoke_staff
    from gate.config import load
    try:
        return revoke_staff(load(args.config), args.card_ids, args.allow_empty)
    except ValueError as exc:   # not a card id
        raise BadUsage(f"staff revoke: {exc}") from exc


def venue(args) -> int:
    """`gate venue live|test`: switch every gate and the house to live (clearing rehearsal uses) or to rehearsal."""
    import time

    from gate.boxoffice.keys import load_private_key
    from gate.boxoffice.staff import sign_control
    from gate.bus import topics
    from gate.bus.client import make_client
    from gate.config import load
    cfg = load(args.config)
    try:
        key = load_private_key(args.key)
        message = sign_control(key, cfg.venue, args.by, args.mode, int(time.time()))   # for this venue only
    except ValueError as exc:
        raise BadUsage(f"venue: {exc}") from exc
    c = make_client(cfg.mqtt, f"venue-control-{int(time.time())}")
    try:
        c.connect(cfg.mqtt.host, cfg.mqtt.port)
    except OSError as exc:
        raise CommandFailed(f"venue: cannot reach the broker at {cfg.mqtt.host}:{cfg.mqtt.port} ({exc})") from exc
    c.loop_start()
    info = c.publish(topics.control(cfg.venue), message, qos=1, retain=True)
    try:
        info.wait_for_publish(timeout=10)
    except (RuntimeError, ValueError):
        pass   # is_published() below says whether it went
    finally:
        c.disconnect()
        c.loop_stop()
    if not info.is_published():
        raise CommandFailed("venue: the broker did not acknowledge the control message")
    print(f"venue {cfg.venue}: {args.mode}" + (" (rehearsal uses are cleared on every gate and the house)"
                                               if args.mode == "live" else ""))
    return OK


def keys_new(args) -> int:
    """`gate keys new`: an Ed25519 key pair NAME.key/NAME.pub, or (--secret) the venue secret."""
    import re

    from gate.boxoffice.keys import new_keypair, new_secret
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.name) or args.name.startswith("."):
        raise BadUsage(f"--name {args.name!r}: letters, digits, '.', '_' and '-' only")
    if args.secret:
        p = new_secret(args.out, args.name)
        print(f"venue secret: {p}  (copy it to the box office, the house and every gate, mode 0600; "
              "[signing] venue_secret)")
        return OK
    kp, pp = new_keypair(args.out, args.name)
    print(f"private key: {kp}  (keep it where lists or tickets are made; never copy it onto a gate)")
    print(f"public key:  {pp}  (on every gate: [signing] ticket_keys for GT1 tickets, "
          "or [signing] list_keys for ticket lists)")
    return OK


def add_tickets(sub) -> None:
    t = sub.add_parser("tickets", help="ticket data").add_subparsers(dest="tickets_cmd", required=True)
    s = t.add_parser("import", help="load a ticket list into a gate, or publish it to all gates")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("tickets")
    s.add_argument("--publish", action="store_true")
    s.add_argument("--revoke", help="file of revoked ticket ids, one a line")
    s.add_argument("--allow-empty", action="store_true", help="accept a list with no tickets (empties the store)")
    s.set_defaults(func=tickets_import)
    s = t.add_parser("issue", help="mint signed ticket codes and QR images")
    s.add_argument("--key", required=True, help="private key file (from gate keys new)")
    s.add_argument("--event", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--zone", default="")
    s.add_argument("--valid-from")
    s.add_argument("--valid-until")
    s.add_argument("--out", required=True)
    s.add_argument("--prefix", default="")
    s.add_argument("--no-png", action="store_true")
    s.set_defaults(func=tickets_issue)


def add_staff(sub) -> None:
    st = sub.add_parser("staff", help="staff cards").add_subparsers(dest="staff_cmd", required=True)
    s = st.add_parser("issue", help="make signed staff cards (a QR PNG per action) to print")
    s.add_argument("--key", required=True, help="the staff private key (gate keys new --name staff)")
    s.add_argument("--name", required=True, help="who holds the card (shown at the gate)")
    s.add_argument("--action", nargs="+", default=["all"],
                   choices=("all", "entry", "exit", "info", "test", "clear"),
                   help="what scanning the card does (default: one card for each)")
    s.add_argument("--valid-until", help="ISO 8601; the card is refused after it (instead of --valid-days)")
    s.add_argument("--valid-days", type=float, default=30, help="the card's lifetime (default 30, at most 400)")
    s.add_argument("-c", "--config", help="any config naming the venue (or --venue)")
    s.add_argument("--venue", help="the venue the card is for (default: from -c)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=staff_issue)
    s = st.add_parser("revoke", help="revoke staff cards by id; the ticket list carries it to every gate at once")
    s.add_argument("card_ids", nargs="+", metavar="CARD_ID", help="16 hex digits, printed on the card")
    s.add_argument("-c", "--config", required=True, help="a config with [signing] list_signing_key (the house's)")
    s.add_argument("--allow-empty", action="store_true",
                   help="no list is retained on the broker: publish one with no tickets, carrying the revocation")
    s.set_defaults(func=staff_revoke)


def add_venue(sub) -> None:
    s = sub.add_parser("venue", help="switch the whole venue to live or to rehearsal (test)")
    s.add_argument("mode", choices=("live", "test"))
    s.add_argument("-c", "--config", required=True, help="any config naming the venue and broker")
    s.add_argument("--key", required=True, help="the staff private key")
    s.add_argument("--by", default="box office", help="who switched (logged by gates and the house)")
    s.set_defaults(func=venue)


def add_keys(sub) -> None:
    k = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_cmd", required=True)
    s = k.add_parser("new", help="make an Ed25519 key pair NAME.key/NAME.pub (or, with --secret, NAME.secret)")
    s.add_argument("--out", default=".")
    s.add_argument("--name", default="tickets")
    s.add_argument("--secret", action="store_true", help="make the venue secret instead (32 random bytes)")
    s.set_defaults(func=keys_new)


# name -> adds that command to `gate`'s subparsers (gate/cli/main.py puts them in order)
COMMANDS = {"tickets": add_tickets, "staff": add_staff, "venue": add_venue, "keys": add_keys}
