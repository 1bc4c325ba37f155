"""`gate demo`: everything on one machine, simulated; the demo itself is gate/sim/demo.py."""

from __future__ import annotations


def demo(args) -> int:
    """`gate demo`: a private broker, simulated gates, the house and its dashboard."""
    from gate.sim.demo import main
    return main(args)


def add_demo(sub) -> None:
    s = sub.add_parser("demo", help="everything on one machine, simulated")
    s.add_argument("--listen", default="127.0.0.1:8080")
    s.add_argument("--duration", type=float, default=0, help="stop after this many seconds (0 = Ctrl-C)")
    s.add_argument("--patrons", type=int, default=0, help="stop after this many patrons (0 = endless)")
    s.set_defaults(func=demo)


# name -> adds that command to `gate`'s subparsers (gate/cli/main.py puts them in order)
COMMANDS = {"demo": add_demo}
