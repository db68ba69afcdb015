"""Settings: defaults, env vars, flags, and one clear error per bad value."""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path

import pytest

from hero_onboarding.config import ConfigError, Mode, ProviderName, load_settings
from hero_onboarding.control.daemons import settings_env


def test_defaults_live_under_the_hero_home(tmp_path):
    settings = load_settings({"HOME": str(tmp_path)})
    assert settings.home == tmp_path / "hero"
    assert settings.data_dir == tmp_path / "hero" / "var" / "hero_onboarding"
    assert settings.db_path == settings.data_dir / "onboarding.db"
    assert settings.socket_dir == tmp_path / "hero" / "var" / "sockets"
    assert (settings.host, settings.port, settings.public_url) == (
        "127.0.0.1",
        8780,
        "http://127.0.0.1:8780",
    )
    assert (settings.currency, settings.amount_min, settings.amount_max) == ("usd", 500, 100_000)
    assert settings.mode == "production"
    assert settings.stripe_api_base is None
    assert settings.webhook_max_bytes == 1 << 20


def test_env_overrides_defaults_and_flags_override_env(tmp_path):
    env = {
        "HOME": str(tmp_path),
        "HERO_ONBOARDING_PORT": "9000",
        "HERO_ONBOARDING_CURRENCY": "EUR",
        "HERO_ONBOARDING_HOME": str(tmp_path / "h"),
        "HERO_SOCKET_DIR": str(tmp_path / "sock"),
    }
    settings = load_settings(env, {"port": "9100", "public_url": "https://pay.example.org/"})
    assert settings.port == 9100
    assert settings.currency == "eur"
    assert settings.data_dir == tmp_path / "h" / "var" / "hero_onboarding"
    assert settings.socket_dir == tmp_path / "sock"
    assert settings.public_url == "https://pay.example.org"


def test_public_url_defaults_to_host_and_port(tmp_path):
    settings = load_settings({"HOME": str(tmp_path)}, {"host": "::1", "port": "8999"})
    assert settings.public_url == "http://[::1]:8999"


def test_relative_paths_become_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings({"HOME": str(tmp_path)}, {"data_dir": "rel/data"})
    assert settings.data_dir == tmp_path / "rel" / "data"
    assert Path(settings.data_dir).is_absolute()


@pytest.mark.parametrize(
    ("env", "flags", "message"),
    [
        (
            {"HERO_ONBOARDING_PORT": "http"},
            {},
            "HERO_ONBOARDING_PORT='http': must be a whole number",
        ),
        ({}, {"port": "70000"}, "--port='70000': must be a TCP port between 1 and 65535"),
        ({}, {"currency": "dollars"}, "--currency='dollars': must be a three-letter ISO 4217 code"),
        ({}, {"mode": "test"}, "--mode='test': must be one of production, sandbox"),
        (
            {},
            {"public_url": "ftp://x"},
            "--public-url='ftp://x': must be an http:// or https:// URL",
        ),
        (
            {},
            {"amount_max": "100000000"},
            "--amount-max='100000000': must be between 1 and 99999999",
        ),
        (
            {},
            {"amount_min": "900", "amount_max": "800"},
            "amount_min (900) is larger than amount_max (800)",
        ),
        (
            {},
            {"webhook_tolerance_s": "0"},
            "--webhook-tolerance-s='0': must be between 1 and 3600 s",
        ),
        (
            {},
            {"log_level": "loud"},
            "--log-level='loud': must be one of debug, info, warning, error",
        ),
        ({}, {"host": "a b"}, "--host='a b': must be an IP address or a host name"),
        ({}, {"write_timeout_s": "soon"}, "--write-timeout-s='soon': must be a number"),
        (
            {"HERO_ONBOARDING_RECONCILE_INTERVAL_S": "-1"},
            {},
            "HERO_ONBOARDING_RECONCILE_INTERVAL_S='-1': must be between 0 and 86400 s",
        ),
        (
            {},
            {"reconcile_interval_s": "15m"},
            "--reconcile-interval-s='15m': must be a whole number",
        ),
        (
            {},
            {"reconcile_window_s": "10"},
            "--reconcile-window-s='10': must be between 60 and 2592000 s",
        ),
        (
            {},
            {"reconcile_interval_s": "7200", "reconcile_window_s": "3600"},
            "--reconcile-window-s=3600 is shorter than --reconcile-interval-s=7200",
        ),
    ],
)
def test_invalid_values_name_the_setting_and_the_reason(tmp_path, env, flags, message):
    with pytest.raises(ConfigError) as caught:
        load_settings({"HOME": str(tmp_path), **env}, flags)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_settings_are_frozen(tmp_path):
    settings = load_settings({"HOME": str(tmp_path)})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


def test_a_url_with_credentials_is_refused_without_echoing_them():
    with pytest.raises(ConfigError) as caught:
        load_settings({}, {"public_url": "https://admin:hunter2@pay.example"})
    assert "hunter2" not in str(caught.value)
    assert "https://***@pay.example" in str(caught.value)
    assert "must not carry a user name or password" in str(caught.value)


def test_sandbox_mode_is_refused_on_a_public_interface():
    with pytest.raises(
        ConfigError, match=r"listen on 127\.0\.0\.1, ::1 or localhost, not 0\.0\.0\.0"
    ):
        load_settings({}, {"mode": "sandbox", "host": "0.0.0.0"})
    for host in ("127.0.0.1", "::1", "localhost"):
        assert load_settings({}, {"mode": "sandbox", "host": host}).mode == "sandbox"


def test_url_schemes_are_read_in_any_case_and_kept_in_lower_case():
    assert load_settings({}, {"public_url": "HTTPS://Pay.Example/"}).public_url == (
        "https://Pay.Example"
    )


def test_trusted_proxies_are_networks():
    settings = load_settings({}, {"trusted_proxies": "10.0.0.0/8, fd00::/8"})
    assert settings.trusted_proxies == (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))
    assert str(settings.trusted_proxies) == "10.0.0.0/8,fd00::/8"  # what control/ hands down
    with pytest.raises(ConfigError, match=re.escape("--trusted-proxies='10.0.0.0/33'")):
        load_settings({}, {"trusted_proxies": "10.0.0.0/33"})


def test_networks_are_parsed_once_and_round_trip_through_the_environment():
    """Settings hold network objects (a request only tests membership); the variable a daemon
    is started with reads back to the same networks, host bits cleared as before."""
    settings = load_settings(
        {"HERO_ONBOARDING_METRICS_NETWORKS": "10.1.2.3/8,::1"}, {"trusted_proxies": "fd00::1/8"}
    )
    assert settings.metrics_networks == (ip_network("10.0.0.0/8"), ip_network("::1/128"))
    assert all(isinstance(n, IPv4Network | IPv6Network) for n in settings.metrics_networks)
    env = settings_env(settings)
    assert env["HERO_ONBOARDING_METRICS_NETWORKS"] == "10.0.0.0/8,::1/128"
    assert load_settings(env) == settings
    default = load_settings({})
    assert default.trusted_proxies == default.metrics_networks
    assert str(default.trusted_proxies) == "127.0.0.0/8,::1/128"
    with pytest.raises(
        ConfigError,
        match=re.escape("--metrics-networks='10.0.0.0/8,nope': must be comma-separated networks"),
    ):
        load_settings({}, {"metrics_networks": "10.0.0.0/8,nope"})


def test_mode_and_provider_are_enums_that_read_as_their_words():
    settings = load_settings({}, {"mode": "SANDBOX", "provider": "Stub"})
    assert settings.mode is Mode.SANDBOX
    assert settings.provider is ProviderName.STUB
    assert (settings.mode, str(settings.provider)) == ("sandbox", "stub")
    assert settings_env(settings)["HERO_ONBOARDING_PROVIDER"] == "stub"
    with pytest.raises(
        ConfigError, match=re.escape("--provider='paypal': must be one of stripe, stub")
    ):
        load_settings({}, {"provider": "paypal"})


def test_reconciliation_runs_every_15_minutes_over_3_days_unless_told_otherwise(tmp_path):
    defaults = load_settings({"HOME": str(tmp_path)})
    assert (defaults.reconcile_interval_s, defaults.reconcile_window_s) == (900, 259200)
    env = {"HOME": str(tmp_path), "HERO_ONBOARDING_RECONCILE_INTERVAL_S": "0"}
    assert load_settings(env).reconcile_interval_s == 0  # the schedule is off
    flags = {"reconcile_interval_s": "60", "reconcile_window_s": "86400"}
    told = load_settings(env, flags)
    assert (told.reconcile_interval_s, told.reconcile_window_s) == (60, 86400)
