"""The `gate` command: one module per role, one exit-code map."""

from gate.cli.main import main

__all__ = ["main"]
