"""Log set-up for a foreground daemon: one line per event, with level and daemon name.

Lines go to stdout: the built-in supervisor collects them into rotating files, systemd and
hero_proc into their journals. `json` gives one object per line for machines.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Final

TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S%z"


class JsonFormatter(logging.Formatter):
    def __init__(self, daemon: str) -> None:
        super().__init__(datefmt=TIME_FORMAT)
        self._daemon = daemon

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, self.datefmt),
            "level": record.levelname,
            "daemon": self._daemon,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, daemon: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter(daemon)
        if log_format == "json"
        else logging.Formatter(
            f"%(asctime)s %(levelname)s {daemon} %(name)s: %(message)s", datefmt=TIME_FORMAT
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
