"""Settings and secrets: every tunable of the service, validated once and passed down.

Daemons never read the environment or files for their configuration. control/ turns
`HERO_ONBOARDING_*` variables and CLI flags into one frozen `Settings` (and resolves `Secrets`)
and hands both to whatever it starts, so a test can build a daemon with any settings it likes
and two daemons in one process can never disagree about a value.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, TypeVar, get_type_hints
from urllib.parse import urlsplit, urlunsplit

from .errors import SetupError
from .primitives import Secret

ENV_PREFIX: Final = "HERO_ONBOARDING_"
ADMIN_SERVICE: Final = "hero_onboarding_admin"


class Mode(StrEnum):
    """Whether money is real. A StrEnum: it compares, prints and reaches env vars as its value."""

    PRODUCTION = "production"
    SANDBOX = "sandbox"  # local Stripe sandbox or the stub, login codes on a local page


class ProviderName(StrEnum):
    """Who takes payments (--provider). Each has a module in payments/ and one entry in
    payments/providers.py's registry; tests/test_providers.py checks the two agree."""

    STRIPE = "stripe"
    STUB = "stub"


LOG_LEVELS: Final = ("debug", "info", "warning", "error")
LOG_FORMATS: Final = ("text", "json")
# Stripe accepts at most 8 digits for an amount in minor units (USD 999,999.99).
STRIPE_MAX_AMOUNT: Final = 99_999_999
# Stripe opens a Checkout Session only if it expires 30 min to 24 h after its creation; we keep
# a margin for latency, retries and clock skew on top of the 30 minutes.
STRIPE_MIN_CHECKOUT_S: Final = 1800
CHECKOUT_EXPIRY_MARGIN_S: Final = 300
STOP_MARGIN_S: Final = 5.0
# Stripe retries a webhook for up to three days, so a payment older than that whose webhook never
# came will not be announced again: reconciliation looks back that far by default. Stripe keeps
# events (refunds are read from them) for 30 days, the longest window worth asking about.
RECONCILE_WINDOW_S: Final = 3 * 86400
MIN_RECONCILE_WINDOW_S: Final = 60
MAX_RECONCILE_WINDOW_S: Final = 30 * 86400
MAX_RECONCILE_INTERVAL_S: Final = 86400


class ConfigError(SetupError, ValueError):
    """A setting has a value the service cannot run with; the message names setting and value."""


# --- validators: each takes the parsed value and returns it (normalised) or raises ValueError ---


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError("must be a TCP port between 1 and 65535")
    return value


def _host(value: str) -> str:
    if not value or any(ch.isspace() for ch in value) or "/" in value:
        raise ValueError("must be an IP address or a host name")
    return value


def http_url(value: str) -> str:
    """The URL without a trailing slash, or ValueError saying what is wrong with it."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ValueError("must not carry a user name or password (URLs reach logs)")
    try:
        _ = parts.port
    except ValueError as exc:
        raise ValueError("has an invalid port") from exc
    return urlunsplit(parts).rstrip("/")  # the scheme in lower case, as urlsplit read it


def without_credentials(text: str) -> str:
    """`https://user:pw@host/x` -> `https://***@host/x`: a bad value is echoed, its secret not."""
    return re.sub(r"(://)[^/@\s]*@", r"\1***@", text)


def _optional_http_url(value: str | None) -> str | None:
    return None if value in (None, "") else http_url(value)


def _optional_header(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", value):
        raise ValueError("must be an HTTP header name such as X-Forwarded-For")
    return value


def _optional_stripe_account(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    if not re.fullmatch(r"acct_[A-Za-z0-9]{1,60}", value):
        raise ValueError("must be a Stripe account id such as acct_1Abc")
    return value


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Networks(tuple[Network, ...]):
    """IP networks, parsed once when Settings are built (a request only tests membership).

    Its str() is the comma form the flag and variable take, so control/ hands a daemon the
    same text it was given (normalised: `10.1.2.3/8` becomes `10.0.0.0/8`).
    """

    __slots__ = ()

    def __str__(self) -> str:
        return ",".join(str(network) for network in self)


def _networks(value: str) -> Networks:
    parts = [part.strip() for part in value.split(",") if part.strip()]
    try:
        return Networks(ipaddress.ip_network(part, strict=False) for part in parts)
    except ValueError as exc:
        raise ValueError(f"must be comma-separated networks such as 10.0.0.0/8: {exc}") from None


def _currency(value: str) -> str:
    value = value.lower()
    if not re.fullmatch(r"[a-z]{3}", value):
        raise ValueError("must be a three-letter ISO 4217 code such as usd")
    return value


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        value = value.lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return check


E = TypeVar("E", bound=StrEnum)


def _member_of(kind: type[E]) -> Callable[[str], E]:
    """The enum member a flag names (any case); the message lists the choices."""
    choices = _one_of(tuple(kind))

    def check(value: str) -> E:
        return kind(choices(value))

    return check


def _between(low: float, high: float, unit: str = "") -> Callable[[Any], Any]:
    def check(value: float) -> float:
        if not low <= value <= high:
            raise ValueError(f"must be between {_number(low)} and {_number(high)}{unit}")
        return value

    return check


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _setting(
    default: Any = MISSING, *, help: str, check: Callable[[Any], Any] | None = None
) -> Any:
    """A Settings field; without a default, load_settings derives the value from others."""
    return field(default=default, metadata={"help": help, "check": check})


@dataclass(frozen=True)
class Settings:
    """What one installation runs with. Built by `load_settings`; never mutated."""

    home: Path = _setting(help="Hero home directory (default ~/hero)")
    data_dir: Path = _setting(
        help="where the database and logs live (default <home>/var/hero_onboarding)"
    )
    socket_dir: Path = _setting(
        help="Hero socket root (default $HERO_SOCKET_DIR or <home>/var/sockets)"
    )
    public_url: str = _setting(
        help="URL users reach the public daemon at (default http://<host>:<port>)", check=http_url
    )
    host: str = _setting("127.0.0.1", help="address the public daemon listens on", check=_host)
    port: int = _setting(8780, help="port the public daemon listens on", check=_port)
    mode: Mode = _setting(
        Mode.PRODUCTION,
        help="production, or sandbox (local Stripe, no real money)",
        check=_member_of(Mode),
    )
    currency: str = _setting("usd", help="currency credits are sold and kept in", check=_currency)
    amount_min: int = _setting(
        500, help="smallest purchase, minor units", check=_between(1, STRIPE_MAX_AMOUNT)
    )
    amount_max: int = _setting(
        100_000, help="largest purchase, minor units", check=_between(1, STRIPE_MAX_AMOUNT)
    )
    provider: ProviderName = _setting(
        ProviderName.STRIPE,
        help="who takes payments: stripe, or stub (a local page, no money, no network)",
        check=_member_of(ProviderName),
    )
    stripe_api_base: str | None = _setting(
        None, help="Stripe API base URL (default: real Stripe)", check=_optional_http_url
    )
    stripe_account: str | None = _setting(
        None,
        help="a connected Stripe account whose events are ours too (default: none; events of"
        " connected accounts are ignored)",
        check=_optional_stripe_account,
    )
    provider_timeout_s: float = _setting(
        20.0,
        help="how long one request to the payment provider may take (two retries follow)",
        check=_between(1, 120, " s"),
    )
    checkout_ttl_s: int = _setting(
        3600,
        help="how long a checkout stays payable (Stripe allows 30 min to 24 h; we need 35 min)",
        check=_between(STRIPE_MIN_CHECKOUT_S + CHECKOUT_EXPIRY_MARGIN_S, 86400, " s"),
    )
    checkout_max_per_hour: int = _setting(
        20, help="checkouts one user may open per hour", check=_between(1, 10_000)
    )
    webhook_max_bytes: int = _setting(
        1 << 20, help="largest webhook body accepted", check=_between(1024, 64 << 20, " bytes")
    )
    webhook_tolerance_s: int = _setting(
        300, help="oldest webhook signature timestamp accepted", check=_between(1, 3600, " s")
    )
    db_busy_timeout_ms: int = _setting(
        5000, help="how long a write waits for another process's lock", check=_between(0, 600_000)
    )
    write_timeout_s: float = _setting(
        15.0, help="how long a request waits for its write to be durable", check=_between(0.1, 600)
    )
    read_timeout_s: float = _setting(
        5.0,
        help="how long a request waits for a database read before it answers 503 (a stalled disk)",
        check=_between(0.1, 600, " s"),
    )
    delivery_retention_days: int = _setting(
        30, help="how long webhook delivery records are kept", check=_between(1, 3650, " days")
    )
    request_head_timeout_s: float = _setting(
        10.0,
        help="how long a client has to send a whole request head (request line and headers),"
        " from connecting or from its first byte after a kept-alive response; sending slowly"
        " does not extend it",
        check=_between(0.1, 600, " s"),
    )
    keepalive_timeout_s: float = _setting(
        75.0,
        help="how long an idle kept-alive connection stays open between requests",
        check=_between(0.1, 3600, " s"),
    )
    body_timeout_s: float = _setting(
        30.0,
        help="how long a client has to send a whole request body once its head is in; then the"
        " request fails and the connection closes",
        check=_between(0.1, 3600, " s"),
    )
    max_connections: int = _setting(
        1000,
        help="most connections the public daemon keeps open at once; more are refused"
        " (also kept below the open-file limit)",
        check=_between(1, 1_000_000),
    )
    max_connections_per_client: int = _setting(
        64,
        help="most connections one client address (an IPv6 /64) may keep open; more are"
        " refused. Not applied to peers in --trusted-proxies when --client-ip-header is set:"
        " behind a reverse proxy every connection comes from the proxy",
        check=_between(1, 1_000_000),
    )
    shutdown_timeout_s: float = _setting(
        5.0, help="grace period for in-flight requests on stop", check=_between(0.1, 300, " s")
    )
    mycelium_api_url: str = _setting(
        "http://127.0.0.1:8989",
        help="the local Mycelium node's HTTP API, which carries login codes",
        check=http_url,
    )
    login_code_ttl_s: int = _setting(
        600, help="how long a login code or key-proof nonce stays valid", check=_between(60, 3600)
    )
    login_max_per_address: int = _setting(
        5, help="login codes one address may be sent per hour", check=_between(1, 10_000)
    )
    login_max_per_ip: int = _setting(
        20, help="login codes one client IP may ask for per hour", check=_between(1, 100_000)
    )
    client_ip_header: str | None = _setting(
        None,
        help="header a trusted reverse proxy puts the client address in (X-Forwarded-For, "
        "X-Real-IP); unset: the TCP peer",
        check=_optional_header,
    )
    trusted_proxies: Networks = _setting(
        _networks("127.0.0.0/8,::1/128"),
        help="comma-separated networks whose --client-ip-header is believed",
        check=_networks,
    )
    metrics_networks: Networks = _setting(
        _networks("127.0.0.0/8,::1/128"),
        help="comma-separated networks allowed to read /metrics",
        check=_networks,
    )
    session_ttl_s: int = _setting(
        7 * 86400, help="how long a login lasts", check=_between(300, 90 * 86400, " s")
    )
    log_level: str = _setting(
        "info", help="debug, info, warning or error", check=_one_of(LOG_LEVELS)
    )
    log_format: str = _setting(
        "text",
        help="text (one line per event), or json (one object per line, for machines)",
        check=_one_of(LOG_FORMATS),
    )
    sandbox_port: int = _setting(
        12111, help="port of the local Stripe sandbox that --start --sandbox runs", check=_port
    )
    reconcile_interval_s: int = _setting(
        900,
        help="how often the admin daemon asks the provider for payments the webhooks missed "
        "(0: never on its own, only when an operator calls `reconcile`)",
        check=_between(0, MAX_RECONCILE_INTERVAL_S, " s"),
    )
    reconcile_window_s: int = _setting(
        RECONCILE_WINDOW_S,
        help="how far back each reconciliation looks (Stripe retries a webhook for 3 days)",
        check=_between(MIN_RECONCILE_WINDOW_S, MAX_RECONCILE_WINDOW_S, " s"),
    )
    start_timeout_s: float = _setting(
        30.0,
        help="how long --start waits for every daemon to answer /health",
        check=_between(1, 600, " s"),
    )

    @property
    def db_path(self) -> Path:
        return self.data_dir / "onboarding.db"

    @property
    def admin_socket_path(self) -> Path:
        """The admin daemon's socket, per the Hero socket spec."""
        return self.socket_dir / ADMIN_SERVICE / "rpc.sock"

    @property
    def stop_timeout_s(self) -> float:
        """How long a daemon may take to stop before it is killed: draining requests, then a
        last commit that may wait on the other daemon's lock, plus a margin. The service units
        in service/ use the same figure for the defaults (TimeoutStopSec=15)."""
        return self.shutdown_timeout_s + self.db_busy_timeout_ms / 1000 + STOP_MARGIN_S

    @property
    def logs_dir(self) -> Path:
        """Where the built-in supervisor writes each daemon's log."""
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        """The built-in supervisor's pid, lock and status files."""
        return self.data_dir / "run"

    @property
    def sandbox_url(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def login_key_path(self) -> Path:
        """The server's x25519 key for login proofs: made once, kept, never shown."""
        return self.data_dir / "login_key"


def setting_names() -> list[str]:
    """Every setting, in declaration order: the CLI builds one flag per name."""
    return [f.name for f in fields(Settings)]


def setting_help(name: str) -> str:
    """The field's help text, with its default when it has a fixed one."""
    found = next(f for f in fields(Settings) if f.name == name)
    has_default = found.default not in (MISSING, None)
    text: str = found.metadata["help"]
    return text + (f" (default {found.default})" if has_default else "")


def env_name(name: str) -> str:
    return ENV_PREFIX + name.upper()


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse(kind: object, text: str) -> Any:
    """Turn the text of a flag or variable into the field's type, or raise ValueError."""
    text = text.strip()
    if kind is int:
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError("must be a whole number")
        return int(text)
    if kind is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError("must be a number") from None
    if kind is Path:
        if not text:
            raise ValueError("must be a path")
        return Path(text).expanduser().absolute()
    return text


def load_settings(
    env: Mapping[str, str], flags: Mapping[str, str | None] | None = None
) -> Settings:
    """Build Settings from defaults, then `HERO_ONBOARDING_*` variables, then CLI flags.

    Raises ConfigError naming the flag or variable whose value is wrong, and why.
    """
    flags = flags or {}
    hints = get_type_hints(Settings)
    values: dict[str, Any] = {}
    for f in fields(Settings):
        source, text = flag_name(f.name), flags.get(f.name)
        if text is None:
            source, text = env_name(f.name), env.get(env_name(f.name))
        if text is None:
            continue
        try:
            value = _parse(hints[f.name], text)
            check = f.metadata["check"]
            values[f.name] = check(value) if check else value
        except ValueError as exc:
            raise ConfigError(f"{source}={without_credentials(text)!r}: {exc}") from None

    home = values.setdefault("home", Path(env.get("HOME") or Path.home()) / "hero")
    values.setdefault("data_dir", home / "var" / "hero_onboarding")
    socket_root = env.get("HERO_SOCKET_DIR")
    values.setdefault(
        "socket_dir",
        Path(socket_root).expanduser().absolute() if socket_root else home / "var" / "sockets",
    )
    values.setdefault(
        "public_url",
        f"http://{_url_host(values.get('host', '127.0.0.1'))}:{values.get('port', 8780)}",
    )
    settings = Settings(**values)
    if settings.mode == Mode.SANDBOX and not _is_loopback_host(settings.host):
        raise ConfigError(
            f"--mode=sandbox lets anyone log in as any address (its login codes are shown on "
            f"/sandbox/outbox): listen on 127.0.0.1, ::1 or localhost, not {settings.host}"
        )
    if settings.provider == ProviderName.STUB and settings.mode != Mode.SANDBOX:
        raise ConfigError(
            "--provider=stub credits payments nobody made: it runs only with --mode=sandbox"
        )
    if settings.reconcile_interval_s > settings.reconcile_window_s:
        raise ConfigError(
            f"--reconcile-window-s={settings.reconcile_window_s} is shorter than "
            f"--reconcile-interval-s={settings.reconcile_interval_s}: a payment made between two "
            "runs would never be looked at; make the window at least the interval"
        )
    if settings.amount_min > settings.amount_max:
        raise ConfigError(
            f"amount_min ({settings.amount_min}) is larger than amount_max ({settings.amount_max})"
        )
    return settings


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    try:
        return f"[{host}]" if ipaddress.ip_address(host).version == 6 else host
    except ValueError:
        return host


@dataclass(frozen=True)
class Secrets:
    """Credentials resolved by control/ at each daemon's boot (hero_proc, then env)."""

    webhook_signing_keys: tuple[Secret, ...] = ()
    stripe_secret_key: Secret | None = None
    stripe_publishable_key: Secret | None = None
