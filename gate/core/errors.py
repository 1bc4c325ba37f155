"""The small exception hierarchy every part of gate raises.

Each class also inherits the builtin it resembles, so callers that only know
Python's own exceptions still catch them sensibly.
"""


class GateError(Exception):
    """Base of every error gate raises on purpose."""


class ConfigError(GateError, ValueError):
    """A config file is malformed; the message names the key and the line."""

    def __init__(self, path, key, line, problem):
        self.path, self.key, self.line, self.problem = path, key, line, problem
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {key}: {problem}")


class TicketFileError(GateError, ValueError):
    """A ticket list is malformed; the message names the row and column."""

    def __init__(self, path, row, column, problem):
        self.path, self.row, self.column, self.problem = path, row, column, problem
        col = f", column {column!r}" if column else ""
        super().__init__(f"{path}: row {row}{col}: {problem}")


class CameraError(GateError, RuntimeError):
    """The camera cannot be opened or stopped delivering frames."""


class PayloadError(GateError, ValueError):
    """An MQTT payload or a barcode payload is malformed."""

    def __init__(self, kind, detail=""):
        self.kind = kind
        super().__init__(f"{kind}: {detail}" if detail else kind)
