"""A small HTTP/1.1 load generator for the bench scripts.

Pre-built requests go out over keep-alive connections, `concurrency` at a time. It is written on
raw asyncio streams because aiohttp's client costs more CPU per request than the server under
test, and on a 2-core machine the load generator would otherwise be what is measured.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    statuses: list[int]  # per request, in request order
    bodies: list[bytes]
    latencies_s: list[float]
    elapsed_s: float

    @property
    def rate(self) -> float:
        return len(self.statuses) / self.elapsed_s

    def percentile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    def summary(self) -> str:
        return (
            f"{len(self.statuses)} requests in {self.elapsed_s:.2f} s = {self.rate:,.0f}/s, "
            f"p50 {self.percentile_ms(0.50):.2f} ms, p99 {self.percentile_ms(0.99):.2f} ms, "
            f"mean {statistics.fmean(self.latencies_s) * 1000:.2f} ms"
        )


def build_post(path: str, body: bytes, headers: dict[str, str], port: int) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", f"Content-Length: {len(body)}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def run_load(port: int, requests: list[bytes], concurrency: int) -> LoadResult:
    """Send every request once, `concurrency` connections in parallel, in order per connection."""
    count = len(requests)
    statuses, bodies, latencies = [0] * count, [b""] * count, [0.0] * count
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while next_index < count:
                index = next_index
                next_index += 1
                started = time.perf_counter()
                writer.write(requests[index])
                statuses[index], bodies[index] = await _read_response(reader)
                latencies[index] = time.perf_counter() - started
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(statuses, bodies, latencies, time.perf_counter() - started)
