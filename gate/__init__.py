"""gate: ticket scanner firmware for venue doors, and the house-count service."""

__version__ = "0.1.0"
