"""The gate's own commands, run on a door's Pi: `gate scan`, `gate decode`, `gate doctor`, `gate config check`.

Each handler returns its exit code (gate/cli/exits.py) and raises what it cannot handle; the heavy
imports (camera, decoder, gpiozero) happen inside the handler, so `gate --help` stays quick on a Pi.
"""

from __future__ import annotations

import json
import logging
import signal
import sys

from gate.cli.exits import BAD_USAGE, OK, BadUsage, CommandFailed
from gate.core.errors import ConfigError

log = logging.getLogger(__name__)


def scan(args) -> int:
    """`gate scan -c FILE`: run one gate until stopped (or a replay runs out)."""
    import threading

    from gate.core import startup
    from gate.core.deferred import defer
    startup.mark("interpreter")
    defer()   # before numpy is first imported: what the gate never uses stays out of its memory
    # Handlers first: a SIGTERM during start-up must also end in a clean stop.
    stop = threading.Event()

    def on_signal(signum, frame):
        log.info("stopping (signal %d)", signum)
        stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from gpiozero.exc import BadPinFactory, GPIOPinInUse, GPIOZeroError

    from gate.camera import ReplaySource, open_source
    from gate.config import load
    from gate.scanner import Scanner
    from gate.sources.readers import is_reader, open_reader
    from gate.verdict_text import verdict_line
    startup.mark("imports")
    cfg = load(args.config)
    if cfg.gate is None:
        raise ConfigError(args.config, "gate", 0, "gate scan needs a [gate] section")
    spec = args.source or cfg.camera.source
    try:   # a USB or serial scanner hands over codes, a camera frames
        source = (open_reader(spec, cfg.reader, cfg.decode.max_payload) if is_reader(spec)
                  else open_source(spec, cfg.camera))
    except ValueError as exc:
        raise BadUsage(f"--source: {exc}") from exc
    if args.loop:
        if not isinstance(source, ReplaySource):
            raise ConfigError(args.config, "camera.source", 0, "--loop is for a replay source only")
        source.loop = True   # a machine without a camera: the replay never ends the scan

    def on_verdict(v, w, e):
        if args.json:
            fields = vars(e).copy()
            if fields.get("clock") == "ok":
                del fields["clock"]   # as on the wire: present only when the clock was not synchronised
            if not fields.get("instance"):
                fields.pop("instance", None)   # as on the wire: present when the gate knows its device
            print(json.dumps(fields, separators=(",", ":")), flush=True)
        else:
            print(verdict_line(v, w, e), flush=True)

    try:
        scanner = Scanner(cfg, source, on_verdict=on_verdict, connect=not args.offline, stop=stop)
    except BadPinFactory as exc:
        raise CommandFailed(f"no usable GPIO ({exc}); on a Pi install python3-lgpio, elsewhere "
                            "set GPIOZERO_PIN_FACTORY=mock") from exc
    except GPIOPinInUse as exc:
        raise CommandFailed(f"GPIO: {exc}: another process holds the pin (is gate-scan.service running?)") from exc
    except GPIOZeroError as exc:
        raise CommandFailed(f"GPIO: {exc}") from exc
    startup.mark("config and build")
    return scanner.run()


def decode(args) -> int:
    """`gate decode IMAGE...`: what the gate's decoder reads in each image; exit 2 if one cannot be read."""
    from gate.camera import load_grey
    from gate.decode import Decoder
    if args.config:
        from gate.config import load
        d = load(args.config).decode
    else:
        d = None
    decoder = Decoder(d.symbologies, d.engine, d.full_every) if d else Decoder()
    if args.symbologies:
        decoder = Decoder(args.symbologies.split(","), args.engine or (d.engine if d else "zxing"))
    elif args.engine:
        decoder = Decoder(engine=args.engine)
    rc = OK
    for path in args.images:
        try:
            y = load_grey(path)
        except Exception as exc:   # a file that is not an image, in any way: name it and go on
            print(f"gate: {path}: cannot read image ({exc})", file=sys.stderr)
            rc = BAD_USAGE
            continue
        codes = decoder.still(y)
        if not codes:
            print(f"{path}\t-")
        for c in codes:
            print(f"{path}\t{c.format}\t{json.dumps(c.text, ensure_ascii=False)}")
    return rc


def doctor(args) -> int:
    """`gate doctor -c FILE`: the readiness checks (gate/cli/doctor.py)."""
    from gate.cli.doctor import main
    return main(args)


def config_check(args) -> int:
    """`gate config check FILE`: parse and check a config; warnings on stderr."""
    from gate.config import load, warnings
    cfg = load(args.file)
    kind = ("gate " + cfg.gate.id if cfg.gate else "house service for " + cfg.house.venue if cfg.house
            else "box office for " + cfg.venue)
    for w in warnings(cfg):
        print(f"{args.file}: warning: {w}", file=sys.stderr)
    print(f"{args.file}: OK ({kind})")
    return OK


def add_scan(sub) -> None:
    s = sub.add_parser("scan", help="run one gate")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--source", help="picamera2 | v4l2:/dev/videoN | hid:/dev/input/eventN | "
                                    "serial:/dev/ttyACM0[@BAUD] | replay:PATH[@FPS]")
    s.add_argument("--json", action="store_true", help="one JSON scan event per line")
    s.add_argument("--offline", action="store_true", help="do not connect to the broker")
    s.add_argument("--loop", action="store_true", help="replay only: start over at the end instead of stopping")
    s.set_defaults(func=scan)


def add_decode(sub) -> None:
    s = sub.add_parser("decode", help="what the gate reads in each image")
    s.add_argument("images", nargs="+")
    s.add_argument("-c", "--config")
    s.add_argument("--engine", choices=("zxing", "zbar"))
    s.add_argument("--symbologies", help="comma-separated, e.g. qr,code128")
    s.set_defaults(func=decode)


def add_doctor(sub) -> None:
    s = sub.add_parser("doctor", help="check camera, GPIO, broker, clock and ticket data")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--clear-latch", action="store_true",
                   help="clear the out-of-order latch (after fixing the door); a running gate notices within a second")
    s.set_defaults(func=doctor)


def add_config(sub) -> None:
    c = sub.add_parser("config", help="config files").add_subparsers(dest="config_cmd", required=True)
    s = c.add_parser("check", help="validate a config file")
    s.add_argument("file")
    s.set_defaults(func=config_check)


# name -> adds that command to `gate`'s subparsers (gate/cli/main.py puts them in order)
COMMANDS = {"scan": add_scan, "decode": add_decode, "doctor": add_doctor, "config": add_config}
