"""Telling systemd how a daemon is doing: the sd_notify protocol, in the standard library.

With `Type=notify` systemd counts a service as started only when READY=1 arrives, so
`systemctl start` and the units ordered after it wait until the daemon answers, not merely until
its process exists; STOPPING=1 makes `systemctl status` say it is draining instead of running.
The protocol is one datagram of `KEY=value` lines to the Unix socket named by $NOTIFY_SOCKET.

$NOTIFY_SOCKET belongs to whoever started the process (like a signal), not to the service's
settings, so it is read here rather than passed down in Settings. Outside systemd (zinit, a
terminal, most tests) it is unset and every call does nothing. Telling the supervisor is never
worth failing the daemon for: a send that fails is logged once and the daemon goes on.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

_warned = False  # one warning per process: a broken socket would otherwise warn on each call


def notify(state: str, env: Mapping[str, str] | None = None) -> bool:
    """Send `state` (newline-separated `KEY=value` lines) to $NOTIFY_SOCKET.

    True when the datagram was handed to the socket; False when no supervisor listens (variable
    unset) or the send failed. Never blocks and never raises: a full or vanished socket is the
    supervisor's problem, not a reason to stop serving.
    """
    address = (os.environ if env is None else env).get("NOTIFY_SOCKET", "")
    if not address:
        return False
    target = os.fsencode(address)
    if target.startswith(b"@"):  # Linux abstract namespace: the name starts with a NUL byte
        target = b"\0" + target[1:]
    elif not target.startswith(b"/"):  # vsock: and other forms we do not speak
        _warn_once("NOTIFY_SOCKET=%r is neither an absolute path nor @abstract", address)
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode(), target)
    except OSError as exc:
        _warn_once("cannot notify the supervisor at %s: %s", address, exc)
        return False
    return True


def ready(status: str, env: Mapping[str, str] | None = None) -> bool:
    """The daemon answers requests now; `status` is what `systemctl status` shows."""
    return notify(f"READY=1\nSTATUS={_one_line(status)}", env)


def stopping(env: Mapping[str, str] | None = None) -> bool:
    """The daemon has begun its clean shutdown (draining requests, committing writes)."""
    return notify("STOPPING=1", env)


def _one_line(text: str) -> str:
    """A newline would start another `KEY=value` assignment in the datagram."""
    return " ".join(text.splitlines())


def _warn_once(message: str, *args: object) -> None:
    global _warned
    if not _warned:
        _warned = True
        log.warning(message, *args)
