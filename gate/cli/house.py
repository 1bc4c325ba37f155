"""The house's command: `gate house -c FILE [run | export | pretix sync|status | set-aside GATE --since TIME]`.

The process itself (the service under systemd, the export, the pretix link) is gate/house/run.py;
this module only says what the command takes and hands it over.
"""

from __future__ import annotations


def house(args) -> int:
    """`gate house`: run the house-count service, export its log, or sync with pretix."""
    from gate.house.run import main
    return main(args)


def add_house(sub) -> None:
    s = sub.add_parser("house", help="run the house-count service (or export its log)")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("action", nargs="?", choices=("run", "export", "pretix", "set-aside"), default="run")
    s.add_argument("pretix_action", nargs="?", default="sync", metavar="sync|status|GATE",
                   help="with `pretix`: sync now (with progress), or show the upload queue; "
                        "with `set-aside`: the gate whose reports are set aside")
    # `gate house -c FILE set-aside GATE --since TIME [--undo]` (gate/house/setaside.py)
    s.add_argument("--since", help="with set-aside: HH:MM (today) or an ISO 8601 time; the gate's reports the "
                                   "house received since then are kept but not counted or uploaded")
    s.add_argument("--undo", action="store_true", help="with set-aside: take the gate's reports back")
    s.add_argument("--format", choices=("csv", "json"), default="csv")
    s.add_argument("--out", help="export to this file (default: standard output)")
    s.set_defaults(func=house)


# name -> adds that command to `gate`'s subparsers (gate/cli/main.py puts them in order)
COMMANDS = {"house": add_house}
