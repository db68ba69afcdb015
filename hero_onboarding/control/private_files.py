"""Keeping the service's files to its own user: directories 0700, files 0600.

The data directory and the logs hold Mycelium addresses, sids, amounts and checkout ids:
business data, like /metrics. The CLI sets umask 077 before anything is created, so what is
new is private; this tightens what an older release (or another umask) left readable.
Only what this user owns is changed, and symbolic links are never followed.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Final

from ..primitives import StartupError

PRIVATE_UMASK: Final = 0o077
LOOSE_BITS: Final = stat.S_IRWXG | stat.S_IRWXO


def make_private(directories: Iterable[Path], *, create: bool) -> None:
    """Each directory 0700 (made so when `create` and missing); the files directly in it
    lose their group and other bits. Blocking (a few syscalls); call before the loop runs."""
    for directory in directories:
        try:
            _make_private(directory, create=create)
        except OSError as exc:
            raise StartupError(f"cannot make {directory} private: {exc.strerror}") from None


def _make_private(directory: Path, *, create: bool) -> None:
    uid = os.geteuid()
    if create:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        info = directory.lstat()
    except (FileNotFoundError, NotADirectoryError):
        return  # nothing to tighten; whoever needs it says why it cannot be made
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid:
        return
    if stat.S_IMODE(info.st_mode) != 0o700:
        directory.chmod(0o700)
    for entry in os.scandir(directory):
        with contextlib.suppress(FileNotFoundError):
            found = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(found.st_mode) and found.st_uid == uid and found.st_mode & LOOSE_BITS:
                os.chmod(entry.path, stat.S_IMODE(found.st_mode) & ~LOOSE_BITS)


def open_private_append(path: Path) -> int:
    """An O_APPEND descriptor on `path`, created 0600 and tightened to it if found looser."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        if os.fstat(fd).st_mode & LOOSE_BITS:
            os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd
