"""The `gate` command: assembles the parser from each role's commands, runs the one asked for,
and turns whatever it raised into an exit code through the one map in gate/cli/exits.py.

Exit codes: 0 success, 1 runtime failure, 2 bad usage, bad config or bad input file. No traceback
reaches the operator: an exception the map does not know is a bug, reported in one line with where
its traceback was written (exit 1); `--debug` or GATE_DEBUG=1 prints tracebacks on stderr instead.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from pathlib import Path

from gate import __version__
from gate.cli.exits import BAD_USAGE, FAILED, OK, exit_for

log = logging.getLogger(__name__)

# Each role's commands, by module (gate/cli/<role>.py, its COMMANDS). A command is looked up here so that
# `gate scan` on a Pi Zero imports only the gate's role: the house's, the box office's, the broker's and
# the demo's modules (and what they import) stay out of its memory. tests/test_cli.py keeps it true.
ROLES = {"gatecmds": ("scan", "decode", "doctor", "config"), "house": ("house",),
         "boxoffice": ("tickets", "staff", "venue", "keys"), "broker": ("broker",), "demo": ("demo",)}
# the order `gate --help` has always listed the commands in; a command not named here comes last
ORDER = ("scan", "decode", "house", "demo", "doctor", "tickets", "staff", "venue", "keys", "broker", "config")
ERROR_LOG_MAX = 1 << 20   # bytes of tracebacks kept (twice: the file and its .1)


def role_modules(command: str | None = None) -> list:
    """The role modules that define `command` (all of them for None or a command nobody defines)."""
    names = [r for r, commands in ROLES.items() if command in commands] or list(ROLES)
    return [importlib.import_module(f"gate.cli.{r}") for r in names]


def command_of(argv: list) -> str | None:
    """The command word in `argv` (the first word that is not a global option), if any; none when help is
    asked before it (`gate --help scan` lists every command)."""
    for a in argv:
        if a in ("--", "-h", "--help"):
            return None
        if not a.startswith("-"):
            return a
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `gate` parser: the global options, then every role's commands (only `command`'s role's, when
    one is given that a role defines: the rest are not even imported)."""
    ap = argparse.ArgumentParser(prog="gate", description="Ticket scanner firmware and house count.")
    ap.add_argument("--version", action="version", version=f"gate {__version__}")
    ap.add_argument("-v", "--verbose", action="store_true")
    ap.add_argument("--debug", action="store_true",
                    help="print the traceback of a failure on stderr (also GATE_DEBUG=1)")
    sub = ap.add_subparsers(dest="command", required=True)
    adders = {}
    for role in role_modules(command):
        adders.update(role.COMMANDS)
    for name in sorted(adders, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        adders[name](sub)
    return ap


def main(argv=None) -> int:
    """Run `gate ARGS` (sys.argv when None); returns the exit code."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser(command_of(argv)).parse_args(argv)
    except SystemExit as exc:   # argparse has printed the usage (or --help, --version)
        return OK if exc.code in (0, None) else BAD_USAGE
    _setup_logging(args.verbose)
    debug = args.debug or os.environ.get("GATE_DEBUG", "") not in ("", "0")
    return dispatch(args, argv, debug)


def dispatch(args, argv, debug: bool = False) -> int:
    """Run the parsed command; every ending, good or bad, becomes 0, 1 or 2."""
    try:
        rc = args.func(args)
    except (Exception, KeyboardInterrupt) as exc:   # SystemExit passes: it already carries its code
        return _failed(exc, argv, debug)
    # like gpiozero's tools: `self.main(args) or 0`; the handlers themselves return ints (tests/test_cli_exits.py)
    return OK if rc is None else int(rc)


def _failed(exc: BaseException, argv, debug: bool) -> int:
    known = exit_for(exc)
    if known is None:
        return _internal_error(exc, argv, debug)
    code, line = known
    if debug:
        log.error("gate %s: exit %d", " ".join(argv), code, exc_info=exc)
    if line is not None:
        print(line, file=sys.stderr)
    return code


def _internal_error(exc: BaseException, argv, debug: bool) -> int:
    """A bug: one line for the operator, the traceback where the log is."""
    what = (str(exc).splitlines() or [""])[0][:300]
    what = f"{type(exc).__name__}: {what}" if what else type(exc).__name__
    if debug or _stderr_is_journal():
        # under systemd stderr is the journal: the log the operator reads there
        log.error("internal error in `gate %s` (gate %s)", " ".join(argv), __version__, exc_info=exc)
        where = "" if debug else f" (traceback in the journal: journalctl _PID={os.getpid()})"
    else:
        written, why = _write_traceback(exc, argv)
        where = (f" (traceback in {written}; GATE_DEBUG=1 prints it here)" if written else
                 f" (no traceback written: {why}; GATE_DEBUG=1 prints it here)")
    print(f"gate: internal error: {what}{where}", file=sys.stderr)
    return FAILED


def error_log_candidates() -> list[Path]:
    """Where an internal error's traceback is written, first that works: the user's state
    directory (XDG), else the temporary directory."""
    # imported only on the way out of a crash: not worth its import time on every start
    import tempfile
    state = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return [Path(state) / "gate" / "gate.log", Path(tempfile.gettempdir()) / f"gate-{os.getuid()}.log"]


def _write_traceback(exc: BaseException, argv) -> tuple[Path | None, str]:
    """Append the traceback, as a log record, to the first error log that can be written."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "internal error in `gate %s` (gate %s)",
                            (" ".join(argv), __version__), (type(exc), exc, exc.__traceback__))
    text = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s").format(record) + "\n"
    why = "no writable place"
    for path in error_log_candidates():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size > ERROR_LOG_MAX:
                path.replace(path.with_name(path.name + ".1"))   # bounded: a crash loop must not fill the SD card
            with open(path, "a", encoding="utf-8") as f:
                f.write(text)
        except OSError as err:
            why = f"cannot write {path} ({err.strerror or err})"
            continue
        return path, ""
    return None, why


def _stderr_is_journal() -> bool:
    """True when stderr is systemd's journal stream (JOURNAL_STREAM names its device and inode)."""
    try:
        dev, ino = (int(x) for x in os.environ["JOURNAL_STREAM"].split(":"))
        st = os.fstat(sys.stderr.fileno())
    except (KeyError, ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


def _setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt="%H:%M:%S")


if __name__ == "__main__":
    sys.exit(main())
