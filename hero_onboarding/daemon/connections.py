"""Connections from the open internet: deadlines for every phase of a request, and caps.

aiohttp alone gives a client as long as it likes: its keep-alive timer (3630 s by default) is
the only clock on a connection that sends nothing or trickles one header line every few
seconds, and nothing bounds how long a body may take or how many connections one address may
hold. Each open connection costs a file descriptor and its buffers, so a few hundred idle or
slow connections were enough to make /health and webhooks time out for everybody.

Here each connection runs on one deadline at a time (see docs/connections.md):

- the request head (request line and headers) must be complete within `head_timeout_s` of the
  connection opening, or of the first byte of the next request on a kept-alive connection;
  sending slowly does not extend it. Then the connection is closed, nothing is parsed further.
- a request body must be complete within `body_timeout_s` of its head. Then whoever reads the
  body (a handler, or aiohttp draining what a handler left unread) gets `BodyTimeout`, the
  client a 408, and the connection closes; no handler needs to cooperate.
- between requests, an idle kept-alive connection is closed after `keepalive_timeout_s`
  (aiohttp's own keepalive_timeout).

and each connection is first counted against `max_connections` in total and
`max_connections_per_client` per client address (an IPv6 /64 counts as one client). Over a
cap, it is refused by the site's own accept loop (GuardedTCPSite) before any transport or
HTTP parsing exists: a fixed 503 is sent if the socket takes it at once, and the socket
closed. A trusted reverse proxy (--trusted-proxies with --client-ip-header) is not held to the
per-client cap, since every connection comes from it.

Why a subclass of aiohttp's RequestHandler rather than a middleware: middlewares run once a
request head is parsed, too late for a connection that never finishes one, and aiohttp has no
setting for a head or body deadline (aiohttp 3.14). The subclass hooks connection_made,
data_received and connection_lost, and handle_error for the 408; it reads two of aiohttp's
attributes (`_request_count`, `_messages`: which heads a chunk completed), which
tests/test_connections.py exercises against the aiohttp installed.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import logging
import resource
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import web
from aiohttp.streams import EMPTY_PAYLOAD, StreamReader
from aiohttp.web_protocol import RequestHandler

from ..config import Network, Settings
from ..errors import InputError
from ..log_limits import ClientErrorFilter, RateLimit, install_loop_handler, suppressed_note
from ..memory_trim import MemoryTrimmer

log = logging.getLogger(__name__)

# Descriptors kept free for everything that is not a client connection: the database and its
# WAL, log files, outgoing connections to Stripe and the Mycelium node.
FD_RESERVE: Final = 64
MIN_CONNECTIONS: Final = 16
# aiohttp's request-parser limits, said here so they are ours: a line of at most 8 KiB (a
# long cookie fits), at most 64 header fields (browsers send ~20).
MAX_LINE_SIZE: Final = 8190
MAX_FIELD_SIZE: Final = 8190
MAX_HEADERS: Final = 64
# Socket reads are handed to aiohttp in chunks of at most this; a request body a handler does
# not read yet is buffered up to twice this before reading from that client pauses.
READ_BUFSIZE: Final = 16 * 1024
# After a body timeout, how long the handler has to answer before the connection is cut.
BODY_TIMEOUT_GRACE_S: Final = 2.0
REFUSED: Final = (
    b"HTTP/1.1 503 Service Unavailable\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 20\r\nConnection: close\r\nRetry-After: 5\r\n"
    b"\r\ntoo many connections"
)
IPV6_CLIENT_PREFIX: Final = 64
# Connections taken per wake-up of the listening socket, and the pause when accept() fails
# for want of descriptors (asyncio's own loop pauses a second; half is enough here).
ACCEPT_BATCH: Final = 64
ACCEPT_RETRY_S: Final = 0.5


class BodyTimeout(InputError, web.RequestPayloadError, TimeoutError, http_status=408):
    """A request body did not arrive within --body-timeout-s of its head.

    Raised from any read of the body (request.read(), .post(), .content). A RequestPayloadError,
    so code that answers 400 to a broken body answers this too; a TimeoutError, so aiohttp's own
    drain of an unread body stops quietly on it.
    """


@dataclass(frozen=True)
class ConnectionLimits:
    head_timeout_s: float
    keepalive_timeout_s: float
    body_timeout_s: float
    max_connections: int
    max_per_client: int
    # Peers never held to the per-client cap: the trusted reverse proxies.
    uncapped_peers: tuple[Network, ...] = ()

    @classmethod
    def of(cls, settings: Settings, *, open_files: int | None = None) -> ConnectionLimits:
        """The limits settings ask for; the total kept FD_RESERVE below `open_files`."""
        total = settings.max_connections
        if open_files is not None:
            total = min(total, max(MIN_CONNECTIONS, open_files - FD_RESERVE))
        return cls(
            head_timeout_s=settings.request_head_timeout_s,
            keepalive_timeout_s=settings.keepalive_timeout_s,
            body_timeout_s=settings.body_timeout_s,
            max_connections=total,
            max_per_client=settings.max_connections_per_client,
            uncapped_peers=settings.trusted_proxies if settings.client_ip_header else (),
        )


def client_key(peername: Any) -> str | None:
    """Who a connection counts against: its IPv4 address, or its IPv6 /64 (one host commonly
    has a whole /64 to pick addresses from). None when the peer is unknown (not TCP)."""
    if not isinstance(peername, tuple) or not peername:
        return None
    try:
        ip = ipaddress.ip_address(peername[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


class ConnectionTable:
    """How many connections are open, in total and per client; admits or refuses new ones."""

    def __init__(
        self, limits: ConnectionLimits, on_burst_over: Callable[[], None] | None = None
    ) -> None:
        self.limits = limits
        self.total = 0
        self.refused = 0
        self._per_client: dict[str, int] = {}
        self._peak = 0
        self._on_burst_over = on_burst_over
        self._refusal_log = RateLimit()

    def admit(self, key: str | None, peer_ip: str | None) -> bool:
        limits = self.limits
        if self.total >= limits.max_connections:
            self._refuse(peer_ip, f"{self.total} connections open (--max-connections)")
            return False
        if key is not None and not self._uncapped(peer_ip):
            held = self._per_client.get(key, 0)
            if held >= limits.max_per_client:
                self._refuse(
                    peer_ip, f"{held} connections open from it (--max-connections-per-client)"
                )
                return False
            self._per_client[key] = held + 1
        self.total += 1
        self._peak = max(self._peak, self.total)
        return True

    def release(self, key: str | None, peer_ip: str | None) -> None:
        self.total -= 1
        if key is not None and not self._uncapped(peer_ip):
            held = self._per_client.get(key, 0) - 1
            if held > 0:
                self._per_client[key] = held
            else:
                self._per_client.pop(key, None)
        # A burst is over when most of the connections of the peak have gone: memory their
        # buffers held can go back to the system (see memory_trim).
        if self._peak >= MIN_CONNECTIONS and self.total <= self._peak // 4:
            self._peak = self.total
            if self._on_burst_over is not None:
                self._on_burst_over()

    def held_by(self, key: str) -> int:
        return self._per_client.get(key, 0)

    def _uncapped(self, peer_ip: str | None) -> bool:
        if peer_ip is None or not self.limits.uncapped_peers:
            return False
        try:
            ip = ipaddress.ip_address(peer_ip)
        except ValueError:
            return False
        return any(ip in network for network in self.limits.uncapped_peers)

    def _refuse(self, peer_ip: str | None, why: str) -> None:
        self.refused += 1
        suppressed = self._refusal_log.allow()
        if suppressed is not None:
            log.warning(
                "refused a connection from %s: %s%s",
                peer_ip or "unknown",
                why,
                suppressed_note(suppressed, 10),
            )


class _Phase(enum.Enum):
    HEAD = "head"  # waiting for (the rest of) a request head: on the head deadline
    BODY = "body"  # a head is in, its body is not: on the body deadline
    OPEN = "open"  # handling, or idle between requests: aiohttp's keep-alive timer


class GuardedRequestHandler(RequestHandler):
    """aiohttp's HTTP/1.1 protocol on one deadline per phase, holding one slot of the table.

    Admission happened before it exists (GuardedTCPSite); it gives its slot back when the
    connection is lost. See the module docstring for why this is a subclass; everything else
    is aiohttp's.
    """

    __slots__ = (
        "_body",
        "_body_late",
        "_deadline",
        "_due",
        "_holds_slot",
        "_key",
        "_on_due",
        "_peer_ip",
        "_phase",
        "_table",
    )

    def __init__(
        self,
        manager: web.Server,
        *,
        table: ConnectionTable,
        key: str | None,
        peer_ip: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(manager, **kwargs)
        self._table = table
        self._key = key
        self._peer_ip = peer_ip
        self._holds_slot = True
        self._phase = _Phase.HEAD
        # The one timer, and what it is for: `_on_due` runs once the loop's clock reaches `_due`
        # (None: nothing is due, the timer may still be armed and will find nothing to do).
        self._deadline: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._on_due: Callable[[], None] | None = None
        self._body: StreamReader | None = None
        self._body_late = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm(self._table.limits.head_timeout_s, self._head_timed_out)

    def release(self) -> None:
        """Give the connection's slot back (once, however often called)."""
        if self._holds_slot:
            self._holds_slot = False
            self._table.release(self._key, self._peer_ip)

    def data_received(self, data: bytes) -> None:
        if self._force_close or self._close:
            return
        if self._phase is _Phase.OPEN and data and not self._upgraded:
            # The first byte of the next request: its head is on the clock from now.
            self._phase = _Phase.HEAD
            self._arm(self._table.limits.head_timeout_s, self._head_timed_out)
        parsed_before = self._request_count
        super().data_received(data)
        if self._request_count != parsed_before and self._messages:
            # Heads were completed; only the newest can still be waiting for its body.
            payload = self._messages[-1][1]
            if payload is not EMPTY_PAYLOAD and not payload.is_eof():
                self._phase, self._body = _Phase.BODY, payload
                self._arm(self._table.limits.body_timeout_s, self._body_timed_out)
            else:
                self._open()
        elif self._phase is _Phase.BODY and self._body is not None and self._body.is_eof():
            self._open()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        if self._deadline is not None:  # nothing may hold a closed connection in the loop
            self._deadline.cancel()
            self._deadline = None
        self._body = None
        self.release()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A body that timed out is a 408 to the client and no log line: it is the client's
        doing, and the deadline already said so (aiohttp would log an ERROR and answer 504)."""
        if status == 504 and self._body_late:
            response = web.Response(status=408, text="request body not received in time")
            response.force_close()
            return response
        return super().handle_error(request, status, exc, message)

    # --- the one deadline ---
    #
    # A kept-alive connection moves from phase to phase twice per request. Arming a new asyncio
    # timer each time (and cancelling the old one) was a TimerHandle, a heap push and a
    # cancelled handle left in the loop's heap per request, on the hottest path there is. So
    # the timer stays armed: a phase only moves `_due`, and when the timer fires it runs what
    # is due, or re-arms itself for a deadline that moved later, or stops when none is set.
    # A connection that keeps finishing requests costs one timer per head timeout, not two
    # per request.

    def _arm(self, delay_s: float, callback: Callable[[], None]) -> None:
        due = self._loop.time() + delay_s
        self._due, self._on_due = due, callback
        timer = self._deadline
        if timer is not None and timer.when() <= due:
            return  # it fires no later than needed, and will look again then
        if timer is not None:
            timer.cancel()
        self._deadline = self._loop.call_at(due, self._deadline_reached)

    def _disarm(self) -> None:
        self._on_due = None

    def _deadline_reached(self) -> None:
        self._deadline = None
        callback = self._on_due
        if callback is None:
            return
        if self._loop.time() < self._due:  # the phase changed since this timer was armed
            self._deadline = self._loop.call_at(self._due, self._deadline_reached)
            return
        self._on_due = None
        callback()

    def _open(self) -> None:
        self._phase, self._body = _Phase.OPEN, None
        self._disarm()

    def _head_timed_out(self) -> None:
        log.debug("closed a connection from %s: no request head in time", self._peer_ip)
        self.force_close()

    def _body_timed_out(self) -> None:
        """Fail the body for whoever reads it, stop keep-alive, and cut the connection if the
        handler has not answered within a grace period."""
        self._body_late = True
        log.debug("request body from %s not received in time", self._peer_ip)
        body = self._body
        if body is not None and not body.is_eof():
            limit = self._table.limits.body_timeout_s
            body.set_exception(BodyTimeout(f"request body not received within {limit:g} s"))
        self.close()
        self._arm(BODY_TIMEOUT_GRACE_S, self._grace_over)

    def _grace_over(self) -> None:
        self.force_close()


def handler_options(limits: ConnectionLimits, logger: logging.Logger) -> dict[str, Any]:
    """aiohttp's own RequestHandler knobs, as these limits want them."""
    return {
        "keepalive_timeout": limits.keepalive_timeout_s,
        "max_line_size": MAX_LINE_SIZE,
        "max_field_size": MAX_FIELD_SIZE,
        "max_headers": MAX_HEADERS,
        "read_bufsize": READ_BUFSIZE,
        # aiohttp reads a body a handler left unread for this long, to keep the connection
        # usable; never longer than the body may take anyway.
        "lingering_time": min(10.0, limits.body_timeout_s),
        # Never inflate a request body: guards.encoded_bodies_middleware refuses compressed
        # ones with 415 unread, and without the inflater nothing can be inflated meanwhile.
        "auto_decompress": False,
        "logger": logger,
        "access_log": None,
    }


class GuardedTCPSite(web.BaseSite):
    """A TCP site with its own accept loop: over a cap, a connection is refused right there.

    asyncio's accept loop takes up to `backlog` connections per wake-up and hands each to the
    protocol a few loop iterations later; refusing in connection_made would leave hundreds of
    descriptors open in between, and a flood would still run the process out of them (EMFILE).
    Here the decision is made on the accepted socket itself: a refused one gets a fixed 503 and
    is closed before the next accept, an admitted one becomes a GuardedRequestHandler through
    loop.connect_accepted_socket, with the runner's server as its manager, so graceful
    shutdown, the request factory and the app are aiohttp's own.
    """

    __slots__ = ("_host", "_listeners", "_options", "_pausing", "_port", "_table", "_tasks")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        table: ConnectionTable,
        options: dict[str, Any],
        backlog: int = 511,
    ) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port = host, port
        self._table = table
        self._options = options
        self._listeners: list[socket.socket] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._pausing: asyncio.TimerHandle | None = None

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            self._host, self._port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                listener = socket.socket(family, kind, proto)
                self._listeners.append(listener)
                listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                listener.bind(address)
                listener.listen(self._backlog)
                listener.setblocking(False)
        except OSError:
            self._close_listeners()
            raise
        self._resume()

    async def stop(self) -> None:
        self._close_listeners()
        await super().stop()

    def _close_listeners(self) -> None:
        loop = asyncio.get_running_loop()
        if self._pausing is not None:
            self._pausing.cancel()
            self._pausing = None
        for listener in self._listeners:
            if listener.fileno() >= 0:
                loop.remove_reader(listener.fileno())
                listener.close()
        self._listeners.clear()

    def _resume(self) -> None:
        self._pausing = None
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            loop.add_reader(listener.fileno(), self._accept, listener)

    def _pause(self, delay_s: float) -> None:
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            loop.remove_reader(listener.fileno())
        self._pausing = loop.call_later(delay_s, self._resume)

    def _accept(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(ACCEPT_BATCH):
            try:
                conn, address = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                # Out of descriptors after all (something else holds them): say so once in a
                # while (log_limits.LoopErrorHandler) and let the backlog wait a moment.
                loop.call_exception_handler(
                    {"message": "socket.accept() out of system resource", "exception": exc}
                )
                self._pause(ACCEPT_RETRY_S)
                return
            key = client_key(address)
            peer_ip = address[0] if isinstance(address, tuple) and address else None
            if not self._table.admit(key, peer_ip):
                _refuse(conn)
                continue
            conn.setblocking(False)
            task = loop.create_task(self._serve(conn, key, peer_ip))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, conn: socket.socket, key: str | None, peer_ip: str | None) -> None:
        loop = asyncio.get_running_loop()
        server = self._runner.server
        if server is None:  # the runner is set up before the socket is served
            raise RuntimeError("the connection guard serves only a runner that was set up")
        made: list[GuardedRequestHandler] = []

        def handler() -> GuardedRequestHandler:
            made.append(
                GuardedRequestHandler(
                    server, loop=loop, table=self._table, key=key, peer_ip=peer_ip, **self._options
                )
            )
            return made[0]

        try:
            if server is None:
                raise ConnectionAbortedError("the site is stopping")
            await loop.connect_accepted_socket(handler, conn)
        except (OSError, RuntimeError) as exc:
            log.debug("connection from %s lost before it was served: %s", peer_ip, exc)
            conn.close()
            if made:
                made[0].release()
            else:
                self._table.release(key, peer_ip)


def _refuse(conn: socket.socket) -> None:
    """The fixed 503, if the socket takes it at once, and the socket closed: no parsing."""
    try:
        conn.setblocking(False)
        conn.send(REFUSED)
    except OSError:
        pass
    finally:
        conn.close()


@dataclass(frozen=True)
class OpenFileLimit:
    soft: int
    hard: int
    before: int


def raise_open_file_limit() -> OpenFileLimit:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit: every connection is a
    descriptor, and the usual soft default (1024) is far below what the daemon can serve."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, target, exc)
            return OpenFileLimit(soft, hard, soft)
        return OpenFileLimit(target, hard, soft)
    return OpenFileLimit(soft, hard, soft)


SiteFactory = Callable[[web.BaseRunner, str, int], web.BaseSite]
HTTP_LOGGER: Final = "hero_onboarding.http"


@asynccontextmanager
async def guarded_sites(settings: Settings) -> AsyncIterator[SiteFactory]:
    """For the public daemon's lifetime: the open-file limit raised, malformed requests and
    accept() failures logged as rate-limited one-liners, and a factory of guarded TCP sites
    (for serving.listening) sharing one connection table."""
    loop = asyncio.get_running_loop()
    files = raise_open_file_limit()
    limits = ConnectionLimits.of(settings, open_files=files.soft)
    log.info(
        "open-file limit %d%s (hard %d): at most %d connections, %d per client",
        files.soft,
        f" (raised from {files.before})" if files.before != files.soft else "",
        files.hard,
        limits.max_connections,
        limits.max_per_client,
    )
    http_log = logging.getLogger(HTTP_LOGGER)
    malformed = ClientErrorFilter()
    http_log.addFilter(malformed)
    restore_loop_handler = install_loop_handler(loop, log)
    trimmer = MemoryTrimmer(loop)
    table = ConnectionTable(limits, on_burst_over=trimmer.soon)
    options = handler_options(limits, http_log)

    def site(runner: web.BaseRunner, host: str, port: int) -> web.BaseSite:
        return GuardedTCPSite(runner, host, port, table=table, options=options)

    try:
        yield site
    finally:
        trimmer.cancel()
        restore_loop_handler()
        http_log.removeFilter(malformed)
