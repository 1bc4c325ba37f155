"""The box office's commands: `gate tickets import|issue`, `gate keys new`, `gate staff issue|revoke`,
`gate venue live|test`. The work is done in gate/boxoffice/; these say what each command takes
and what it answers."""

from __future__ import annotations

from pathlib import Path

from gate.cli.exits import OK, BadUsage, CommandFailed
from gate.core.errors import TicketFileError


def boxoffice_config(path, command: str):
    """The box office's own config, or BadUsage (exit 2) naming the one to use: read before anything
    touches the broker, so the house's or a gate's identity is never borrowed (docs/contract.md,
    "Three parties, three identities")."""
    from gate.config import load
    from gate.config.boxoffice import party_of
    party = party_of(path)
    if party in ("house", "gate"):
        whose = "the house's" if party == "house" else "a gate's"
        raise BadUsage(
            f"{command}: {path} is {whose} config; the box office's commands connect as the box office's own "
            f"broker user, never as the {party} (the broker would push the running {party} off and wipe what "
            f"is queued for it): use -c {Path(path).with_name('boxoffice.toml')} (example: config/boxoffice.toml; "
            "`install-pi --role house` writes /etc/gate/boxoffice.toml)")
    cfg = load(path)
    if cfg.boxoffice is None:
        raise BadUsage(f"{command}: {path} has no [boxoffice] section: give the box office's config "
                       "(example: config/boxoffice.toml)")
    return cfg


def _roster(cfg):
    """Who must confirm, given what the broker holds: the roster file's gates, or every gate with a status."""
    from gate.boxoffice.confirm import gates_heard
    if cfg.boxoffice.roster:
        from gate.bus.brokerconf import read_roster
        fixed = read_roster(cfg.boxoffice.roster, cfg.venue)
        return lambda latest: list(fixed)
    return lambda latest: gates_heard(latest, cfg.venue)


def _confirmed(answers, what: str, wait_s: float, nobody: str) -> int:
    """Print each party's answer; exit 1 (CommandFailed) naming who did not confirm."""
    from gate.boxoffice.confirm import table
    if not answers:
        print(f"{what}: {nobody}")
        return OK
    for line in table(answers):
        print(line)
    missed = [a.party for a in answers if not a.ok]
    if missed:
        raise CommandFailed(f"{what}: not confirmed by {', '.join(missed)} ({len(answers) - len(missed)} of "
                            f"{len(answers)} confirmed within {wait_s:g} s; what to check is on each line above)")
    print(f"{what}: confirmed by all {len(answers)}")
    return OK


def tickets_import(args) -> int:
    """`gate tickets import -c FILE TICKETS`: into a gate's store, or (--publish, the box office) signed to
    every gate, waiting until each gate on the roster runs it."""
    from gate.boxoffice.ticketfile import read_ticket_file
    from gate.config import load
    from gate.config.boxoffice import party_of
    from gate.core.progress import Progress
    from gate.core.storage import GateFiles
    from gate.state.tickets import TicketStore
    if args.publish:
        cfg = boxoffice_config(args.config, "tickets import --publish")
    elif party_of(args.config) in ("boxoffice", "house"):
        raise BadUsage(f"tickets import: {args.config} is not a gate's config: without --publish the list is loaded "
                       "into the store of the gate a config describes; add --publish (with the box office's "
                       "config) to send it to every gate")
    else:
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
        return _publish_list(cfg, args, tickets, revoked)
    if cfg.gate is None:
        raise BadUsage(f"tickets import: {args.config} has no [gate] section")
    store = TicketStore(GateFiles.of(cfg.storage.dir).tickets)
    version = store.replace_all(tickets, revoked)
    store.close()
    print(f"imported {len(tickets):,} tickets into {cfg.storage.dir} (data version {version})")
    return OK


def _publish_list(cfg, args, tickets, revoked) -> int:
    from gate.boxoffice import confirm
    from gate.boxoffice.publish import ListPublisher
    from gate.bus import topics
    from gate.bus.client import BusError
    from gate.bus.publisher import BusSession, session_id
    pub = ListPublisher.from_config(cfg, role="boxoffice")
    parties = _roster(cfg)
    try:
        payload = pub.pack(tickets, revoked)
    except ValueError as exc:   # a value no gate would accept: say so here, not on every gate
        raise BadUsage(f"{args.tickets}: {exc}") from exc
    wait_s = args.wait if args.wait is not None else cfg.boxoffice.wait_s
    series, seq = pub.last
    try:
        with BusSession(cfg.mqtt, session_id("boxoffice", cfg.venue)) as bus:
            bus.subscribe(topics.statuses(cfg.venue))   # first: the gates' retained statuses say who is there
            pub.publish(payload, session=bus)           # raises PublishRefused naming the user and the topic
            print(f"published {len(tickets):,} tickets ({len(payload):,} bytes, signed, list {series}/{seq}) "
                  f"to {topics.tickets(cfg.venue)}; waiting up to {wait_s:g} s for every gate to apply it",
                  flush=True)
            answers = confirm.await_answers(bus, cfg.venue, parties, confirm.list_judge(series, seq), wait_s)
    except BusError as exc:
        raise CommandFailed(f"tickets import --publish: list {series}/{seq} not published: {exc}") from exc
    return _confirmed(answers, f"list {series}/{seq}", wait_s,
                      "no gate on the roster and none has a status on the broker: nobody confirmed it; the list "
                      "is retained on the broker for the gates that connect later")


def tickets_issue(args) -> int:
    """`gate tickets issue`: mint signed ticket codes, a CSV and a QR PNG each."""
    from gate.boxoffice.issue import issue
    try:
        return issue(args)
    except ValueError as exc:   # a key that is not an Ed25519 private key, a bad --valid-from/--valid-until
        raise BadUsage(f"tickets issue: {exc}") from exc


def staff_issue(args) -> int:
    """`gate staff issue`: a signed staff card (QR PNG) per action, for one venue, with an end; signed
    with the box office's [signing] staff_key (-c boxoffice.toml), or --key with --venue."""
    from gate.boxoffice.staffcards import issue_staff
    venue = args.venue or ""
    if args.config:
        cfg = boxoffice_config(args.config, "staff issue")
        args.key = args.key or cfg.signing.staff_key
        venue = venue or cfg.venue
    if not args.key:
        raise BadUsage("staff issue: no staff key: give -c boxoffice.toml (its [signing] staff_key) or --key")
    if not venue:
        raise BadUsage("staff issue: a card is signed for one venue: give -c boxoffice.toml or --venue VENUE")
    try:
        return issue_staff(args, venue)
    except ValueError as exc:   # a key that is not an Ed25519 private key, a bad --valid-until/--valid-days
        raise BadUsage(f"staff issue: {exc}") from exc


def staff_revoke(args) -> int:
    """`gate staff revoke`: revoked cards recorded and carried by the signed list to every gate; waits
    until each gate on the roster runs that list."""
    from gate.boxoffice import confirm
    from gate.boxoffice.publish import ListPublisher
    from gate.boxoffice.revokedcards import CARD_ID_RE
    from gate.boxoffice.staffcards import revoke_staff
    from gate.bus import topics
    from gate.bus.client import BusError
    from gate.bus.publisher import BusSession, session_id
    cfg = boxoffice_config(args.config, "staff revoke")
    bad = [c for c in args.card_ids if not CARD_ID_RE.match(c.strip().lower())]
    if bad:   # said before anything is recorded or sent
        raise BadUsage(f"staff revoke: not a card id (16 hex digits, printed on the card): {bad[0]!r}")
    ListPublisher.from_config(cfg, role="boxoffice")   # the list signing key and venue secret (exit 2 naming them)
    parties = _roster(cfg)
    wait_s = args.wait if args.wait is not None else cfg.boxoffice.wait_s
    try:
        # one connection: a second one under the box office's user would push this one off the broker
        with BusSession(cfg.mqtt, session_id("boxoffice", cfg.venue)) as bus:
            bus.subscribe(topics.statuses(cfg.venue))
            try:
                series, seq = revoke_staff(cfg, args.card_ids, args.allow_empty, session=bus)
            except ValueError as exc:   # not a card id
                raise BadUsage(f"staff revoke: {exc}") from exc
            answers = confirm.await_answers(bus, cfg.venue, parties, confirm.list_judge(series, seq), wait_s)
    except BusError as exc:
        raise CommandFailed(f"staff revoke: {exc}") from exc
    return _confirmed(answers, f"list {series}/{seq}", wait_s,
                      "no gate on the roster and none has a status on the broker: nobody confirmed it")


def venue(args) -> int:
    """`gate venue live|test`: switch every gate and the house to live (clearing rehearsal uses) or to
    rehearsal, then wait until the house and every gate on the roster say so on their status topics."""
    import time

    from gate.boxoffice import confirm
    from gate.boxoffice.keys import load_private_key
    from gate.boxoffice.staff import sign_control
    from gate.bus import topics
    from gate.bus.client import BusError
    from gate.bus.publisher import BusSession, session_id
    cfg = boxoffice_config(args.config, "venue")
    key_path = args.key or cfg.signing.staff_key
    if not key_path:
        raise BadUsage(f"venue: no staff key: set [signing] staff_key in {cfg.path} or give --key")
    gates = _roster(cfg)
    wait_s = args.wait if args.wait is not None else cfg.boxoffice.wait_s
    issued = int(time.time())
    try:
        key = load_private_key(key_path)
        message = sign_control(key, cfg.venue, args.by, args.mode, issued)   # for this venue only
    except ValueError as exc:
        raise BadUsage(f"venue: {exc}") from exc
    try:
        with BusSession(cfg.mqtt, session_id("boxoffice", cfg.venue)) as bus:
            bus.subscribe(topics.statuses(cfg.venue))   # the house's and the gates' (retained) statuses
            bus.publish(topics.control(cfg.venue), message, retain=True)   # raises PublishRefused
            print(f"venue {cfg.venue}: {args.mode} sent; waiting up to {wait_s:g} s for the house and every gate "
                  "to confirm", flush=True)
            answers = confirm.await_answers(bus, cfg.venue, lambda latest: [confirm.HOUSE] + gates(latest),
                                            confirm.venue_judge(args.mode, issued), wait_s)
    except BusError as exc:
        raise CommandFailed(f"venue: {args.mode} not sent: {exc}") from exc
    _confirmed(answers, f"venue {cfg.venue}: {args.mode}", wait_s, "")
    if args.mode == "live":
        print("rehearsal uses are cleared on every gate and the house")
    return OK


def keys_new(args) -> int:
    """`gate keys new`: an Ed25519 key pair NAME.key/NAME.pub, or (--secret) the venue secret; with -c
    (the box office's config), every key its [signing] names that does not exist yet."""
    import re

    from gate.boxoffice.keys import new_keypair, new_secret
    if args.config:
        if args.out or args.name or args.secret:
            raise BadUsage("keys new: -c makes the keys the config names; --out, --name and --secret are for one key")
        return _keys_of_config(args.config)
    name, out = args.name or "tickets", args.out or "."
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name) or name.startswith("."):
        raise BadUsage(f"--name {name!r}: letters, digits, '.', '_' and '-' only")
    if args.secret:
        p = new_secret(out, name)
        print(f"venue secret: {p}  (copy it to the box office, the house and every gate, mode 0600; "
              "[signing] venue_secret)")
        return OK
    kp, pp = new_keypair(out, name)
    print(f"private key: {kp}  (keep it where lists or tickets are made; never copy it onto a gate)")
    print(f"public key:  {pp}  (on every gate: [signing] ticket_keys for GT1 tickets, "
          "or [signing] list_keys for ticket lists)")
    return OK


# what each key a box-office config names is for, and where its public half goes
_KEY_USES = {"list_signing_key": ("signs ticket lists", "goes in every gate's and the house's [signing] list_keys"),
             "staff_key": ("signs staff cards and venue control messages",
                           "goes in every gate's and the house's [signing] staff_keys"),
             "venue_secret": ("code hashes and list encryption",
                              "copy it (mode 0600) to the house and every gate: [signing] venue_secret")}


def _keys_of_config(path) -> int:
    """Make the box office's keys where its config names them (existing ones are kept), then check it."""
    from gate.boxoffice.keys import new_keypair, new_secret
    from gate.config import load
    from gate.config.boxoffice import key_paths, party_of
    if party_of(path) != "boxoffice":
        boxoffice_config(path, "keys new")   # says whose config it is instead (exit 2)
    named = key_paths(path)
    if not named:
        raise BadUsage(f"keys new: {path} names no key in [signing] (list_signing_key, staff_key, venue_secret)")
    for key, file in named.items():
        f = Path(file)
        want = ".secret" if key == "venue_secret" else ".key"
        if f.suffix != want:
            raise BadUsage(f"keys new: signing.{key} = {file!r} must end in {want} "
                           f"(gate keys new writes NAME{want}{'' if want == '.secret' else ' and NAME.pub'})")
        what, where = _KEY_USES[key]
        if f.exists():
            print(f"kept   {f}  ({what})")
            continue
        if key == "venue_secret":
            new_secret(f.parent, f.stem)
            print(f"made   {f}  ({what}); {where}")
        else:
            print(f"made   {f}  ({what}); {new_keypair(f.parent, f.stem)[1]} {where}")
    load(path)   # the config as a whole is usable now (exit 2 naming the key when not)
    print(f"{path}: keys ready")
    return OK


def add_tickets(sub) -> None:
    t = sub.add_parser("tickets", help="ticket data").add_subparsers(dest="tickets_cmd", required=True)
    s = t.add_parser("import", help="load a ticket list into a gate, or publish it to all gates")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("tickets")
    s.add_argument("--publish", action="store_true",
                   help="sign it and send it to every gate (with the box office's config), waiting until each runs it")
    s.add_argument("--wait", type=float, help="seconds to wait for the gates to confirm (default [boxoffice] wait_s)")
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
    s.add_argument("-c", "--config", help="the box office's config (its [signing] staff_key signs the cards)")
    s.add_argument("--key", help="the staff private key instead (with --venue)")
    s.add_argument("--name", required=True, help="who holds the card (shown at the gate)")
    s.add_argument("--action", nargs="+", default=["all"],
                   choices=("all", "entry", "exit", "info", "test", "clear"),
                   help="what scanning the card does (default: one card for each)")
    s.add_argument("--valid-until", help="ISO 8601; the card is refused after it (instead of --valid-days)")
    s.add_argument("--valid-days", type=float, default=30, help="the card's lifetime (default 30, at most 400)")
    s.add_argument("--venue", help="the venue the card is for (default: the config's)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=staff_issue)
    s = st.add_parser("revoke", help="revoke staff cards by id; the ticket list carries it to every gate at once")
    s.add_argument("card_ids", nargs="+", metavar="CARD_ID", help="16 hex digits, printed on the card")
    s.add_argument("-c", "--config", required=True, help="the box office's config (boxoffice.toml)")
    s.add_argument("--allow-empty", action="store_true",
                   help="no list is retained on the broker: publish one with no tickets, carrying the revocation")
    s.add_argument("--wait", type=float, help="seconds to wait for the gates to apply it (default [boxoffice] wait_s)")
    s.set_defaults(func=staff_revoke)


def add_venue(sub) -> None:
    s = sub.add_parser("venue", help="switch the whole venue to live or to rehearsal (test)")
    s.add_argument("mode", choices=("live", "test"))
    s.add_argument("-c", "--config", required=True, help="the box office's config (boxoffice.toml)")
    s.add_argument("--key", help="the staff private key (default: the config's [signing] staff_key)")
    s.add_argument("--by", default="box office", help="who switched (logged by gates and the house)")
    s.add_argument("--wait", type=float,
                   help="seconds to wait for the house and the gates to confirm (default [boxoffice] wait_s)")
    s.set_defaults(func=venue)


def add_keys(sub) -> None:
    k = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_cmd", required=True)
    s = k.add_parser("new", help="make an Ed25519 key pair NAME.key/NAME.pub (or, with --secret, NAME.secret)")
    s.add_argument("-c", "--config", help="the box office's config: make every key its [signing] names (kept "
                                           "when it exists)")
    s.add_argument("--out", help="directory for one key (default: here)")
    s.add_argument("--name", help="its name (default: tickets)")
    s.add_argument("--secret", action="store_true", help="make the venue secret instead (32 random bytes)")
    s.set_defaults(func=keys_new)


# name -> adds that command to `gate`'s subparsers (gate/cli/main.py puts them in order)
COMMANDS = {"tickets": add_tickets, "staff": add_staff, "venue": add_venue, "keys": add_keys}
