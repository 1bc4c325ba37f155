"""The house's command: `gate house -c FILE [run | export | report | pretix sync|status | set-aside GATE --since
TIME]`.

The process itself (the service under systemd, the export, the pretix link) is gate/house/run.py;
the night's report is gate/house/report.py (figures) and reportpage.py (the page). This module
only says what the command takes and hands it over.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile

from gate.cli.exits import BadUsage


def house(args) -> int:
    """`gate house`: run the house-count service, export its log, report a night, or sync with pretix."""
    if args.action == "report":
        return report(args)
    from gate.house.run import main
    return main(args)


def report(args) -> int:
    """`gate house report -c FILE --event EV [--out FILE] [--json]`: the night's house report."""
    from gate.config import load
    from gate.house.report import UnknownEvent, night_report
    from gate.house.reportpage import page
    if not args.event:
        raise BadUsage("gate house report needs --event EV: the performance to report on")
    cfg = load(args.config)
    if cfg.house is None:
        raise BadUsage(f"{args.config}: gate house report needs a [house] section")
    try:
        figures = night_report(cfg, args.event)
    except UnknownEvent as exc:
        known = ", ".join(exc.known[-12:]) or "none yet"
        raise BadUsage(f"no live scan of performance {exc.event!r} in the attendance log, and the config names no "
                       f"such performance (performances: {known})") from None
    text = json.dumps(figures, indent=1) + "\n" if args.json else page(figures)
    if not args.out:
        sys.stdout.write(text)
        return 0
    write_atomically(args.out, text)
    print(f"{'figures' if args.json else 'report'} for {args.event} written to {args.out}", file=sys.stderr)
    return 0


def write_atomically(path: str, text: str) -> None:
    """The whole file or none: a report cut short by a full disk never looks finished."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".report-")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def add_house(sub) -> None:
    s = sub.add_parser("house", help="run the house-count service (or export its log, or report a night)")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("action", nargs="?", choices=("run", "export", "report", "pretix", "set-aside"), default="run")
    s.add_argument("pretix_action", nargs="?", default="sync", metavar="sync|status|GATE",
                   help="with `pretix`: sync now (with progress), or show the upload queue; "
                        "with `set-aside`: the gate whose reports are set aside")
    # `gate house -c FILE set-aside GATE --since TIME [--undo]` (gate/house/setaside.py)
    s.add_argument("--since", help="with set-aside: HH:MM (today) or an ISO 8601 time; the gate's reports the "
                                   "house received since then are kept but not counted or uploaded")
    s.add_argument("--undo", action="store_true", help="with set-aside: take the gate's reports back")
    s.add_argument("--accept-shrink", action="store_true",
                   help="with `pretix sync`: publish a result the house held back (empty, or far smaller)")
    s.add_argument("--format", choices=("csv", "json"), default="csv")
    s.add_argument("--out", help="export or report to this file (default: standard output)")
    s.add_argument("--event", help="with `report`: the performance (event id) to report on")
    s.add_argument("--json", action="store_true", help="with `report`: the figures as JSON (for the CRM)")
    s.set_defaults(func=house)


# name -> adds that command to `gate`'s subparsers (gate/cli/main.py puts them in order)
COMMANDS = {"house": add_house}
