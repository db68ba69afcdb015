"""Who is at the other end of a connected Unix socket: the kernel says (SO_PEERCRED).

Both ends use it: the server names its caller in the audit trail, the client refuses a server
run by another user before it sends anything.
"""

from __future__ import annotations

import functools
import pwd
import socket
import struct
from dataclasses import dataclass
from typing import Final

_UCRED: Final = struct.Struct("3i")  # struct ucred: pid, uid, gid


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    pid: int
    uid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials | None:
    """The peer's pid and uid, or None when the socket cannot say (not AF_UNIX, closed)."""
    if sock.family != socket.AF_UNIX:
        return None
    try:
        pid, uid, _ = _UCRED.unpack(
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
        )
    except OSError:
        return None
    return PeerCredentials(pid, uid)


@functools.lru_cache(maxsize=64)
def user_name(uid: int) -> str:
    """The account name of `uid`, or "no such user"."""
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "no such user"
