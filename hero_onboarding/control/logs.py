"""Log set-up for a foreground daemon: one line per event, with level and daemon name."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str, daemon: str) -> None:
    """Log to stderr, which the supervisor (or the journal) collects."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s %(levelname)s {daemon} %(name)s: %(message)s",
            datefmt="%Y-%m-%dT%H:%M:%S%z",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
