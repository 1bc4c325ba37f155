"""The house's command: `gate house -c FILE [run | export | pretix sync|status]`.

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
    s.add_argument("action", nargs="?", choices=("run", "export", "pretix"), default="run")
    s.add_argument("pretix_action", nargs="?", choices=("sync", "status"), default="sync",
                   help="with `pretix`: sync now (with progress), or show the upload queue")
    s.add_argument("--format", choices=("csv", "json"), default="csv")
    s.add_argument("--out", help="export to this file (default: standard output)")
    s.set_defaults(func=house)


# name -> adds that command to `gate`'s subparsers (gate/cli/main.py puts them in order)
COMMANDS = {"house": add_house}
