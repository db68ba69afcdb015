"""Hostile request bodies for a real server: a gzip bomb, raw HTTP that reads while it sends.

Shared by tests/test_hostile_bodies.py and scripts/bench_hostile.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import struct
import time
import zlib
from dataclasses import dataclass

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
BOMB_INFLATED = 1 << 30
_BLOCK_INPUT = 1 << 24
SEND_PIECE = 64 * 1024


@functools.cache
def gzip_bomb() -> bytes:
    """A valid gzip stream of about 1 MB that inflates to 1 GiB of zeros, built in ~0.5 s.

    One 16 MiB block of zeros is compressed once and repeated: a full flush byte-aligns it
    and resets the window, so identical blocks may follow each other in one deflate stream.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(_BLOCK_INPUT)
    block = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = compressor.flush()
    crc, mebibyte = 0, bytes(1 << 20)
    for _ in range(BOMB_INFLATED >> 20):
        crc = zlib.crc32(mebibyte, crc)
    trailer = struct.pack("<II", crc, BOMB_INFLATED & 0xFFFFFFFF)
    return GZIP_HEADER + block * (BOMB_INFLATED // _BLOCK_INPUT) + final + trailer


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    answered_s: float  # from the first byte sent to the status line
    closed_s: float | None  # from the first byte sent to the server closing (None: it did not)


async def raw_post(
    port: int,
    path: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
    timeout: float = 10.0,
    close_wait: float = 3.0,
) -> RawAnswer:
    """POST `body` over a fresh connection, reading the answer while still sending.

    A server that answers early and stops reading is what we test for, so the sender runs in
    its own task and its connection errors are expected. Then wait up to `close_wait` s for
    the server to close the connection (closed_s None if it kept it open).
    """
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    framing = {"Transfer-Encoding": "chunked"} if chunked else {"Content-Length": str(len(body))}
    head = "".join(
        f"{k}: {v}\r\n"
        for k, v in {"Host": f"127.0.0.1:{port}", **(headers or {}), **framing}.items()
    )
    started = time.monotonic()

    async def send() -> None:
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(f"POST {path} HTTP/1.1\r\n{head}\r\n".encode())
            for at in range(0, len(body), SEND_PIECE):
                piece = body[at : at + SEND_PIECE]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                await writer.drain()
            if chunked:
                writer.write(b"0\r\n\r\n")
                await writer.drain()

    sender = asyncio.create_task(send())
    try:
        status_line = await asyncio.wait_for(reader.readline(), timeout)
        answered = time.monotonic() - started
        if not status_line:
            raise ConnectionError(f"{path}: closed without an answer")
        answer_headers: dict[str, str] = {}
        while (line := await asyncio.wait_for(reader.readline(), timeout)) not in (b"\r\n", b""):
            name, _, value = line.decode().partition(":")
            answer_headers[name.strip().lower()] = value.strip()
        length = int(answer_headers.get("content-length", "0"))
        answer_body = await asyncio.wait_for(reader.readexactly(length), timeout)
        closed: float | None = None
        try:
            while await asyncio.wait_for(reader.read(65536), close_wait):
                pass
            closed = time.monotonic() - started
        except TimeoutError:  # (an OSError too: caught first) the server kept it open
            pass
        except (ConnectionError, OSError):
            closed = time.monotonic() - started
        return RawAnswer(int(status_line.split()[1]), answer_headers, answer_body, answered, closed)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()
