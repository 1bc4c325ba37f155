"""What a `gate` command's ending means to the operator: the three exit codes and the one map
from exception to exit code and message.

0 success, 1 runtime failure (the broker, the camera, the disk, a port in use), 2 bad usage, bad
config or bad input file. Commands raise; only this map decides the code, so the same failure
ends the same way whichever command met it. An exception the map does not know is a bug: the
dispatcher (gate/cli/main.py) reports it as an internal error, exit 1.
"""

from __future__ import annotations

from gate.core.errors import CameraError, ConfigError, GateError, TicketFileError

OK = 0
FAILED = 1       # it did not take effect: a runtime failure
BAD_USAGE = 2    # bad usage, bad config or bad input file: nothing was tried


class CommandFailed(Exception):
    """A command could not do its work at run time; the message says why (exit 1)."""


class BadUsage(Exception):
    """A command was given something it cannot use: an option, a key file, an input (exit 2)."""


# (what was raised, exit code, what goes before its message); first match wins, so the
# specific classes come before their bases (ConfigError is a GateError, BusError an OSError).
EXIT_MAP: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], int, str | None], ...] = (
    (BadUsage, BAD_USAGE, ""),
    (CommandFailed, FAILED, ""),
    ((ConfigError, TicketFileError), BAD_USAGE, ""),
    (CameraError, FAILED, "camera: "),
    (GateError, FAILED, ""),
    # a path given on the command line that is not there, or not a file: bad input
    ((FileNotFoundError, IsADirectoryError, NotADirectoryError), BAD_USAGE, ""),
    (OSError, FAILED, ""),   # PermissionError, FileExistsError, a full disk, a refused connection
    (KeyboardInterrupt, FAILED, None),   # Ctrl-C: the operator knows; nothing to print
)


def exit_for(exc: BaseException) -> tuple[int, str | None] | None:
    """The exit code and the one line to print for `exc` (None: print nothing), or None when the
    map does not know it."""
    for kinds, code, prefix in EXIT_MAP:
        if isinstance(exc, kinds):
            return code, None if prefix is None else f"gate: {prefix}{exc}"
    return None
