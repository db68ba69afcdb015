"""hero_proc through the real CLI: secrets from its store, and running the service under it.

hero_proc itself cannot run here; tests/fake_hero_proc.py speaks its (assumed) protocol on a
Unix socket and really starts and stops the processes it is given.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hero_onboarding.config import load_settings
from hero_onboarding.control.daemons import service_name
from tests.admin_kit import short_socket_dir
from tests.conftest import SIGNING_SECRET
from tests.control_kit import Install
from tests.fake_hero_proc import FakeHeroProc, running_fake_hero_proc
from tests.sandbox_kit import API_KEY
from tests.stripe_events import body_of, checkout_event, new_id, sign
from tests.waiting import wait_until

pytestmark = pytest.mark.process  # every test here starts real processes

E = "hero-onboarding: error: "
SECRETS = {"STRIPE_WEBHOOK_SIGNING_KEY": SIGNING_SECRET, "STRIPE_SANDBOX_SECRET_KEY": API_KEY}


@pytest.fixture
def hero_proc(tmp_path: Path) -> Iterator[FakeHeroProc]:
    socket = short_socket_dir() / "rpc.sock"
    with running_fake_hero_proc(socket, log_dir=tmp_path / "hero_proc", secrets=SECRETS) as fake:
        fake.socket_path = socket  # type: ignore[attr-defined]
        yield fake


@pytest.fixture
def install(tmp_path: Path, hero_proc: FakeHeroProc) -> Iterator[Install]:
    installed = Install.in_tmp(tmp_path, HERO_PROC_SOCKET=str(hero_proc.socket_path))  # type: ignore[attr-defined]
    yield installed
    installed.stop_all()


def post_webhook(url: str, secret: str) -> int:
    """A signed checkout.session.completed for nobody we know: 200 if the signature holds."""
    body = body_of(
        checkout_event(
            "checkout.session.completed", sid="nobody", amount=500, payment_intent=new_id("pi")
        )
    )
    request = urllib.request.Request(
        url + "/webhooks/stripe",
        data=body.encode(),
        headers={"Stripe-Signature": sign(body, secret), "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_secrets_come_from_hero_proc_before_the_environment(
    install: Install, hero_proc: FakeHeroProc
) -> None:
    wrong = "whsec_from_the_environment_not_used"
    started = install.cli("--start", "--backend", "builtin", STRIPE_WEBHOOK_SIGNING_KEY=wrong)
    assert started.returncode == 0, started.stderr
    asked = [call.params for call in hero_proc.calls if call.method == "secret_get"]
    assert {"name": "STRIPE_WEBHOOK_SIGNING_KEY"} in asked
    url = f"http://127.0.0.1:{install.env['HERO_ONBOARDING_PORT']}"
    assert post_webhook(url, SIGNING_SECRET) == 200  # hero_proc's secret is the one in use
    assert post_webhook(url, wrong) == 401
    shown = " ".join(" ".join(p.cmdline()) for p in install.processes())
    shown += install.logs() + install.cli("--status", "--json").stdout
    assert SIGNING_SECRET not in shown
    assert API_KEY not in shown


def test_hero_proc_failing_means_one_warning_then_the_environment(
    install: Install, hero_proc: FakeHeroProc
) -> None:
    hero_proc.secret_errors = True
    started = install.cli("--start", "--backend", "builtin", env=SECRETS)
    assert started.returncode == 0, started.stderr
    server_log = (install.data_dir / "logs" / "server.log").read_text()
    warnings = [line for line in server_log.splitlines() if "did not give secrets" in line]
    assert len(warnings) == 1
    assert "WARNING server" in warnings[0]
    url = f"http://127.0.0.1:{install.env['HERO_ONBOARDING_PORT']}"
    assert post_webhook(url, SIGNING_SECRET) == 200


def test_the_hero_proc_backend_registers_starts_and_stops_through_it(
    install: Install, hero_proc: FakeHeroProc
) -> None:
    started = install.cli("--start")  # auto: hero_proc answers, so it runs the daemons
    assert started.returncode == 0, started.stderr
    assert "running under hero_proc" in started.stdout
    services = set(hero_proc.services)
    assert {name.rsplit("_", 1)[0] for name in services} == {
        "hero_onboarding_server", "hero_onboarding_admin"
    }  # fmt: skip
    for method in ("service_create", "service_monitor"):
        named = {c.params["name"] for c in hero_proc.calls if c.method == method}
        assert named == services
    created = next(c.params for c in hero_proc.calls if c.method == "service_create")
    assert created["content"]["log"] == "stdout"
    assert "STRIPE" not in " ".join(created["content"]["env"])  # secrets stay in its store
    assert all(service.running for service in hero_proc.services.values())

    status = install.status()
    assert status["backend"] == "hero_proc"
    assert status["healthy"]
    pids = [d["pid"] for d in status["daemons"]]
    assert all(pids)
    assert install.cli("--start").stdout.startswith("already running")

    stopped = install.cli("--stop")
    assert stopped.returncode == 0
    assert stopped.stdout.strip() == "stopped"
    assert hero_proc.services == {}
    assert "service_stop" in hero_proc.methods_called()
    wait_until(lambda: install.processes() == [], timeout=10, what="the daemons are gone")
    assert install.cli("--status").returncode == 3


def test_under_hero_proc_a_secret_only_in_the_shell_is_refused(
    install: Install, hero_proc: FakeHeroProc
) -> None:
    hero_proc.secrets.pop("STRIPE_SANDBOX_SECRET_KEY")
    answer = install.cli("--start", "--backend", "hero_proc", STRIPE_SANDBOX_SECRET_KEY=API_KEY)
    assert answer.returncode == 2
    assert answer.stderr == (
        f"{E}STRIPE_SANDBOX_SECRET_KEY is only in this shell's environment; daemons run by "
        "hero_proc read secrets from its store: put it there, or use --backend builtin\n"
    )
    assert hero_proc.services == {}


def test_sandbox_mode_under_hero_proc_hands_it_no_key(
    install: Install, hero_proc: FakeHeroProc
) -> None:
    started = install.cli("--start", "--sandbox", "--backend", "hero_proc")
    assert started.returncode == 0, started.stderr
    keys = json.loads((install.data_dir / "sandbox-keys.json").read_text())
    assert len(hero_proc.services) == 3
    for service in hero_proc.services.values():
        env = service.content["env"]
        assert env["HERO_ONBOARDING_SANDBOX_KEYS_FILE"] == str(
            install.data_dir / "sandbox-keys.json"
        )
        assert not set(keys.values()) & set(env.values())
    assert install.status()["healthy"]
    assert install.cli("--stop").returncode == 0
    assert hero_proc.services == {}


def test_a_start_hero_proc_refuses_halfway_is_undone(
    install: Install, hero_proc: FakeHeroProc
) -> None:
    admin = service_name(load_settings(install.env), "admin")  # the last one started
    hero_proc.fail = {("service_monitor", admin): (-32005, "config error")}
    answer = install.cli("--start", "--backend", "hero_proc")
    assert answer.returncode == 1
    assert "service_stop" in hero_proc.methods_called()  # the server it had started is undone
    [line] = answer.stderr.splitlines()
    assert line.startswith(f"{E}hero_proc could not start the service: ")
    assert hero_proc.services == {}
    assert install.processes() == []
    hero_proc.fail = {}
    assert install.cli("--start", "--backend", "hero_proc").returncode == 0


def test_a_hero_proc_without_service_methods_leaves_the_builtin_backend_working(
    install: Install, hero_proc: FakeHeroProc
) -> None:
    hero_proc.unsupported = {"service_status", "service_create"}
    assert install.cli("--start", "--backend", "builtin").returncode == 0
    status = install.status()
    assert status["backend"] == "builtin"
    assert status["healthy"]
    stopped = install.cli("--stop")
    assert stopped.returncode == 0
    assert stopped.stdout.strip() == "stopped"
    assert install.processes() == []


def test_two_installations_sharing_hero_proc_keep_to_their_own_services(
    tmp_path: Path, install: Install, hero_proc: FakeHeroProc
) -> None:
    assert install.cli("--start").returncode == 0
    ours = set(hero_proc.services)
    other = Install.in_tmp(tmp_path / "other", HERO_PROC_SOCKET=install.env["HERO_PROC_SOCKET"])
    assert other.cli("--status").returncode == 3
    stopped = other.cli("--stop")
    assert stopped.stdout.strip() == "not running; nothing to stop"
    assert set(hero_proc.services) == ours
    assert install.status()["healthy"]
