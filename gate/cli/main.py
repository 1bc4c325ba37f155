"""The `gate` command. Exit codes: 0 success, 1 runtime failure, 2 bad usage,
bad config or bad input file."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path

from gate import __version__
from gate.core.errors import CameraError, ConfigError, GateError, TicketFileError

log = logging.getLogger(__name__)


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _load(path):
    from gate.config import load
    return load(path)


def cmd_scan(args) -> int:
    import threading
    # Handlers first: a SIGTERM during start-up must also end in a clean stop.
    stop = threading.Event()

    def on_signal(signum, frame):
        log.info("stopping (signal %d)", signum)
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from gpiozero.exc import BadPinFactory, GPIOPinInUse, GPIOZeroError

    from gate.camera import open_source
    from gate.scanner import Scanner
    from gate.verdict_text import verdict_line
    cfg = _load(args.config)
    if cfg.gate is None:
        raise ConfigError(args.config, "gate", 0, "gate scan needs a [gate] section")
    spec = args.source or cfg.camera.source
    from gate.sources.readers import is_reader, open_reader
    try:   # a USB or serial scanner hands over codes, a camera frames
        source = (open_reader(spec, cfg.reader, cfg.decode.max_payload) if is_reader(spec)
                  else open_source(spec, cfg.camera))
    except ValueError as exc:
        print(f"gate: --source: {exc}", file=sys.stderr)
        return 2
    if args.loop:
        if source.name != "replay":
            raise ConfigError(args.config, "camera.source", 0, "--loop is for a replay source only")
        source.loop = True   # a machine without a camera: the replay never ends the scan

    def on_verdict(v, e):
        if args.json:
            fields = vars(e).copy()
            if fields.get("clock") == "ok":
                del fields["clock"]   # as on the wire: present only when the clock was not synchronised
            print(json.dumps(fields, separators=(",", ":")), flush=True)
        else:
            print(verdict_line(v, e), flush=True)

    try:
        scanner = Scanner(cfg, source, on_verdict=on_verdict, connect=not args.offline, stop=stop)
    except BadPinFactory as exc:
        print(f"gate: no usable GPIO ({exc}); on a Pi install python3-lgpio, elsewhere "
              "set GPIOZERO_PIN_FACTORY=mock", file=sys.stderr)
        return 1
    except GPIOPinInUse as exc:
        print(f"gate: GPIO: {exc}: another process holds the pin (is gate-scan.service running?)", file=sys.stderr)
        return 1
    except GPIOZeroError as exc:
        print(f"gate: GPIO: {exc}", file=sys.stderr)
        return 1
    return scanner.run()


def cmd_decode(args) -> int:
    from gate.camera import load_grey
    from gate.decode import Decoder
    d = (_load(args.config).decode if args.config else None)
    decoder = Decoder(d.symbologies, d.engine, d.full_every) if d else Decoder()
    if args.symbologies:
        decoder = Decoder(args.symbologies.split(","), args.engine or (d.engine if d else "zxing"))
    elif args.engine:
        decoder = Decoder(engine=args.engine)
    rc = 0
    for path in args.images:
        try:
            y = load_grey(path)
        except Exception as exc:
            print(f"gate: {path}: cannot read image ({exc})", file=sys.stderr)
            rc = 2
            continue
        codes = decoder.still(y)
        if not codes:
            print(f"{path}\t-")
        for c in codes:
            print(f"{path}\t{c.format}\t{json.dumps(c.text, ensure_ascii=False)}")
    return rc


def cmd_config_check(args) -> int:
    from gate.config import warnings
    cfg = _load(args.file)
    kind = "gate " + cfg.gate.id if cfg.gate else "house service for " + cfg.house.venue
    for w in warnings(cfg):
        print(f"{args.file}: warning: {w}", file=sys.stderr)
    print(f"{args.file}: OK ({kind})")
    return 0


def cmd_tickets_import(args) -> int:
    from gate.boxoffice.ticketfile import read_ticket_file
    from gate.core.progress import Progress
    from gate.core.storage import GateFiles
    from gate.state.tickets import TicketStore
    cfg = _load(args.config)
    p = Progress(f"reading {args.tickets}")
    tickets = read_ticket_file(args.tickets, progress=p)
    revoked = [t.ticket_id for t in tickets if t.status == "revoked"]
    if args.revoke:
        revoked += [l.strip() for l in Path(args.revoke).read_text().splitlines() if l.strip()]
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
            print(f"gate: {args.tickets}: {exc}", file=sys.stderr)
            return 2
        pub.publish(payload)        # raises BusError/GateError saying why
        series, seq = pub.last
        print(f"published {len(tickets):,} tickets ({len(payload):,} bytes, signed, list {series}/{seq}) "
              f"to {topics.tickets(cfg.venue)}")
        return 0
    store = TicketStore(GateFiles.of(cfg.storage.dir).tickets)
    version = store.replace_all(tickets, revoked)
    store.close()
    print(f"imported {len(tickets):,} tickets into {cfg.storage.dir} (data version {version})")
    return 0


def cmd_tickets_issue(args) -> int:
    from gate.boxoffice.issue import issue
    return issue(args)


def cmd_broker_config(args) -> int:
    from gate.bus import brokerconf
    venue = args.venue
    if not venue and args.config:
        venue = _load(args.config).venue
    if not venue:
        print("gate: broker config needs --venue or -c HOUSE_CONFIG", file=sys.stderr)
        return 2
    split = lambda text: [x.strip() for x in (text or "").split(",") if x.strip()]
    hosts = args.host or brokerconf.default_hosts()
    try:
        made = brokerconf.write_config(args.out, venue, split(args.gates), split(args.dashboards), hosts,
                                       args.port, args.bind)
    except brokerconf.BrokerConfigError as exc:
        print(f"gate: broker config: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {made['conf']} (users: {', '.join(made['users'])})")
    for user, path in made["new_passwords"].items():
        print(f"new password for {user}: {path}")
    print("give each party only its own users/NAME.password and ca.crt; for the house:")
    print(brokerconf.mqtt_section(args.out, brokerconf.HOUSE, hosts[0], args.port))


def cmd_staff_issue(args) -> int:
    from gate.boxoffice.issue import issue_staff
    try:
        return issue_staff(args)
    except ValueError as exc:   # a key that is not an Ed25519 private key, a bad --valid-until
        print(f"gate: staff issue: {exc}", file=sys.stderr)
        return 2


def cmd_venue(args) -> int:
    """Switch every gate and the house to live (clearing rehearsal uses) or to rehearsal."""
    import time

    from gate.boxoffice.keys import load_private_key
    from gate.boxoffice.staff import CONTROL, sign
    from gate.bus import topics
    from gate.bus.client import make_client
    cfg = _load(args.config)
    try:
        key = load_private_key(args.key)
    except ValueError as exc:
        print(f"gate: venue: {exc}", file=sys.stderr)
        return 2
    message = sign(key, CONTROL, args.by, args.mode, int(time.time()))
    c = make_client(cfg.mqtt, f"venue-control-{int(time.time())}")
    try:
        c.connect(cfg.mqtt.host, cfg.mqtt.port)
    except OSError as exc:
        print(f"gate: venue: cannot reach the broker at {cfg.mqtt.host}:{cfg.mqtt.port} ({exc})", file=sys.stderr)
        return 1
    c.loop_start()
    info = c.publish(topics.control(cfg.venue), message, qos=1, retain=True)
    try:
        info.wait_for_publish(timeout=10)
    except (RuntimeError, ValueError):
        pass
    finally:
        c.disconnect()
        c.loop_stop()
    if not info.is_published():
        print("gate: venue: the broker did not acknowledge the control message", file=sys.stderr)
        return 1
    print(f"venue {cfg.venue}: {args.mode}" + (" (rehearsal uses are cleared on every gate and the house)"
                                               if args.mode == "live" else ""))
    return 0


def cmd_keys_new(args) -> int:
    import re

    from gate.boxoffice.keys import new_keypair, new_secret
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", args.name) or args.name.startswith("."):
        print(f"gate: --name {args.name!r}: letters, digits, '.', '_' and '-' only", file=sys.stderr)
        return 2
    if args.secret:
        p = new_secret(args.out, args.name)
        print(f"venue secret: {p}  (copy it to the box office, the house and every gate, mode 0600; "
              "[signing] venue_secret)")
        return 0
    kp, pp = new_keypair(args.out, args.name)
    print(f"private key: {kp}  (keep it where lists or tickets are made; never copy it onto a gate)")
    print(f"public key:  {pp}  (on every gate: [signing] ticket_keys for GT1 tickets, "
          "or [signing] list_keys for ticket lists)")
    return 0


def cmd_house(args) -> int:
    from gate.house.run import main
    return main(args)


def cmd_demo(args) -> int:
    from gate.sim.demo import main
    return main(args)


def cmd_doctor(args) -> int:
    from gate.cli.doctor import main
    return main(args)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="gate", description="Ticket scanner firmware and house count.")
    ap.add_argument("--version", action="version", version=f"gate {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="command", required=True)

    s = sub.add_parser("scan", help="run one gate")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--source", help="picamera2 | v4l2:/dev/videoN | hid:/dev/input/eventN | "
                                    "serial:/dev/ttyACM0[@BAUD] | replay:PATH[@FPS]")
    s.add_argument("--json", action="store_true", help="one JSON scan event per line")
    s.add_argument("--offline", action="store_true", help="do not connect to the broker")
    s.add_argument("--loop", action="store_true", help="replay only: start over at the end instead of stopping")
    s.set_defaults(func=cmd_scan)

    s = sub.add_parser("decode", help="what the gate reads in each image")
    s.add_argument("images", nargs="+")
    s.add_argument("-c", "--config")
    s.add_argument("--engine", choices=("zxing", "zbar"))
    s.add_argument("--symbologies", help="comma-separated, e.g. qr,code128")
    s.set_defaults(func=cmd_decode)

    s = sub.add_parser("house", help="run the house-count service (or export its log)")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("action", nargs="?", choices=("run", "export", "pretix"), default="run")
    s.add_argument("pretix_action", nargs="?", choices=("sync", "status"), default="sync",
                   help="with `pretix`: sync now (with progress), or show the upload queue")
    s.add_argument("--format", choices=("csv", "json"), default="csv")
    s.add_argument("--out", help="export to this file (default: standard output)")
    s.set_defaults(func=cmd_house)

    s = sub.add_parser("demo", help="everything on one machine, simulated")
    s.add_argument("--listen", default="127.0.0.1:8080")
    s.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = Ctrl-C)")
    s.add_argument("--patrons", type=int, default=0, help="stop after this many patrons (0 = endless)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("doctor", help="check camera, GPIO, broker, clock and ticket data")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--clear-latch", action="store_true",
                   help="clear the out-of-order latch (after fixing the door); a running gate notices within a second")
    s.set_defaults(func=cmd_doctor)

    t = sub.add_parser("tickets", help="ticket data").add_subparsers(dest="tickets_cmd", required=True)
    s = t.add_parser("import", help="load a ticket list into a gate, or publish it to all gates")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("tickets")
    s.add_argument("--publish", action="store_true")
    s.add_argument("--revoke", help="file of revoked ticket ids, one a line")
    s.add_argument("--allow-empty", action="store_true", help="accept a list with no tickets (empties the store)")
    s.set_defaults(func=cmd_tickets_import)
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
    s.set_defaults(func=cmd_tickets_issue)

    st = sub.add_parser("staff", help="staff cards").add_subparsers(dest="staff_cmd", required=True)
    s = st.add_parser("issue", help="make signed staff cards (a QR PNG per action) to print")
    s.add_argument("--key", required=True, help="the staff private key (gate keys new --name staff)")
    s.add_argument("--name", required=True, help="who holds the card (shown at the gate)")
    s.add_argument("--action", nargs="+", default=["all"],
                   choices=("all", "entry", "exit", "info", "test", "clear"),
                   help="what scanning the card does (default: one card for each)")
    s.add_argument("--valid-until", help="ISO 8601; the card is refused after it")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_staff_issue)

    s = sub.add_parser("venue", help="switch the whole venue to live or to rehearsal (test)")
    s.add_argument("mode", choices=("live", "test"))
    s.add_argument("-c", "--config", required=True, help="any config naming the venue and broker")
    s.add_argument("--key", required=True, help="the staff private key")
    s.add_argument("--by", default="box office", help="who switched (logged by gates and the house)")
    s.set_defaults(func=cmd_venue)

    k = sub.add_parser("keys", help="signing keys").add_subparsers(dest="keys_cmd", required=True)
    s = k.add_parser("new", help="make an Ed25519 key pair NAME.key/NAME.pub (or, with --secret, NAME.secret)")
    s.add_argument("--out", default=".")
    s.add_argument("--name", default="tickets")
    s.add_argument("--secret", action="store_true", help="make the venue secret instead (32 random bytes)")
    s.set_defaults(func=cmd_keys_new)

    br = sub.add_parser("broker", help="the venue's MQTT broker").add_subparsers(dest="broker_cmd", required=True)
    s = br.add_parser("config", help="write a Mosquitto configuration: TLS, a user per party, ACL")
    s.add_argument("--out", required=True, help="directory for gate.conf, certificates, passwd, acl, users/")
    s.add_argument("--venue", help="venue id (default: from -c)")
    s.add_argument("-c", "--config", help="the house config (for its venue)")
    s.add_argument("--gates", default="", help="gate ids, comma-separated (one broker user each)")
    s.add_argument("--dashboards", default="dashboard", help="read-only dashboard users, comma-separated")
    s.add_argument("--host", action="append", help="a name or address gates use for the broker (repeatable; "
                   "default: this machine's host name, NAME.local, localhost, 127.0.0.1)")
    s.add_argument("--port", type=int, default=8883)
    s.add_argument("--bind", default="", help="listen on this address only (default: all)")
    s.set_defaults(func=cmd_broker_config)

    c = sub.add_parser("config", help="config files").add_subparsers(dest="config_cmd", required=True)
    s = c.add_parser("check", help="validate a config file")
    s.add_argument("file")
    s.set_defaults(func=cmd_config_check)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except (ConfigError, TicketFileError) as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return 2
    except CameraError as exc:
        print(f"gate: camera: {exc}", file=sys.stderr)
        return 1
    except GateError as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return 1
    except (FileExistsError, FileNotFoundError, PermissionError) as exc:
        print(f"gate: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, FileNotFoundError) else 1
    except KeyboardInterrupt:
        return 1


if __name__ == "__main__":
    sys.exit(main())
