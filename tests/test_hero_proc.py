"""The hero_proc client against the fake hero_proc, over a real Unix socket, with real processes."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest
from aiohttp import web

from hero_onboarding.rpc.hero_proc import (
    ALREADY_EXISTS,
    INVALID_SIGNAL,
    IS_DOWN,
    IS_UP,
    METHOD_NOT_FOUND,
    SERVICE_NOT_FOUND,
    HeroProcClient,
    HeroProcError,
    HeroProcUnavailable,
    ServiceSpec,
    ServiceStatus,
    hero_proc_socket,
)
from tests.admin_kit import short_socket_dir
from tests.fake_hero_proc import REDACTED, FakeCall, FakeHeroProc, running_fake_hero_proc
from tests.waiting import wait_until, wait_until_async

SECRET = "sk_test_" + "c3" * 12
SECRETS = {"stripe_api_key": SECRET}
MARKER = "hero-proc-test-service"
# Says it started (with a value from its env), then lives until signalled.
SLEEPER = f"import os, time; print('{MARKER}', os.environ['HP_TOKEN'], flush=True)\n" + (
    "while True: time.sleep(0.05)"
)


@pytest.fixture
def sock_dir():
    directory = short_socket_dir()
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def socket_path(sock_dir: Path) -> Path:
    return sock_dir / "rpc.sock"


@pytest.fixture
async def fake(socket_path: Path, tmp_path: Path):
    served = FakeHeroProc(log_dir=tmp_path / "logs", secrets=dict(SECRETS))
    async with served.serving(socket_path):
        yield served


@pytest.fixture
async def hp(fake: FakeHeroProc, socket_path: Path):
    async with HeroProcClient(socket_path) as client:
        yield client


def sleeper_spec(name: str = "sleeper", **overrides) -> ServiceSpec:
    fields = {
        "name": name,
        "exec": shlex.join([sys.executable, "-c", SLEEPER]),
        "env": {"HP_TOKEN": "token-from-env"},
        "shutdown_timeout": 5,
    }
    return ServiceSpec(**{**fields, **overrides})


# Ignores SIGTERM; says so once it does.
STUBBORN = textwrap.dedent(
    """
    import signal, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring", flush=True)
    while True: time.sleep(0.05)
    """
)

# A daemon that handles SIGTERM: says it got it, finishes its work (until the file named by
# argv[1] exists, so the test decides when) and exits 0.
GRACEFUL = textwrap.dedent(
    """
    import os, signal, sys, time
    asked = []
    signal.signal(signal.SIGTERM, lambda *_: asked.append(1))
    print("ready", flush=True)
    while not asked: time.sleep(0.02)
    print("got SIGTERM", flush=True)
    while not os.path.exists(sys.argv[1]): time.sleep(0.02)
    print("done", flush=True)
    """
)


async def logged(fake: FakeHeroProc, name: str, text: str) -> None:
    async def said() -> bool:
        return text in fake.log_of(name)

    await wait_until_async(said, timeout=10, what=f"{name} logged {text!r}")


async def exited(hp: HeroProcClient, name: str) -> ServiceStatus:
    """Poll its status until its pid is 0 (the supervisor reaped it), as a caller of stop must."""
    seen: list[ServiceStatus] = []

    async def reaped() -> bool:
        status = await hp.service_status(name)
        assert status is not None
        seen.append(status)
        return status.pid == 0

    await wait_until_async(reaped, timeout=10, what=f"{name}'s pid is 0")
    return seen[-1]


# -- where hero_proc is -----------------------------------------------------------------------


def test_the_socket_is_the_env_override_else_under_home(tmp_path: Path) -> None:
    home = str(tmp_path)
    assert hero_proc_socket({"HOME": home}) == tmp_path / "hero/var/sockets/hero_proc/rpc.sock"
    assert hero_proc_socket({"HOME": home, "HERO_PROC_SOCKET": "/run/hp.sock"}) == Path(
        "/run/hp.sock"
    )
    assert hero_proc_socket({}) == Path.home() / "hero/var/sockets/hero_proc/rpc.sock"


# -- secrets ----------------------------------------------------------------------------------


async def test_a_stored_secret_comes_back(hp: HeroProcClient, fake: FakeHeroProc) -> None:
    await hp.ping()
    assert await hp.secret_get("stripe_api_key") == SECRET
    assert fake.calls == [FakeCall("secret_get", {"name": "stripe_api_key"})]


@pytest.mark.parametrize("as_null", [False, True], ids=["error-32020", "null-result"])
async def test_a_secret_not_stored_is_none(
    hp: HeroProcClient, fake: FakeHeroProc, as_null: bool
) -> None:
    fake.secret_missing_as_null = as_null
    assert await hp.secret_get("webhook_secret") is None
    assert fake.methods_called() == ["secret_get"]


async def test_a_failing_secret_store_is_an_error(hp: HeroProcClient, fake: FakeHeroProc) -> None:
    fake.secret_errors = True
    with pytest.raises(HeroProcError) as caught:
        await hp.secret_get("stripe_api_key")
    assert caught.value.code == -32603


async def test_a_secret_answer_that_is_not_a_string_is_an_error_that_hides_it(
    hp: HeroProcClient, fake: FakeHeroProc
) -> None:
    fake.canned["secret_get"] = {"value": SECRET}
    with pytest.raises(HeroProcError) as caught:
        await hp.secret_get("stripe_api_key")
    assert caught.value.code is None
    assert SECRET not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


async def test_the_call_log_never_holds_a_secret_value(
    hp: HeroProcClient, fake: FakeHeroProc
) -> None:
    """A client sending a secret on (in a service's env) leaves no trace of it in the log."""
    await hp.secret_get("stripe_api_key")
    await hp.service_create(sleeper_spec(env={"STRIPE_KEY": SECRET}))
    created = fake.calls[-1]
    assert created.method == "service_create"
    assert created.params["content"]["env"] == {"STRIPE_KEY": REDACTED}
    assert SECRET not in repr(fake.calls)
    assert fake.services["sleeper"].content["env"] == {"STRIPE_KEY": SECRET}  # what it runs with


# -- hero_proc not there, or not answering usefully ---------------------------------------------


async def test_no_socket_file_means_unavailable(socket_path: Path) -> None:
    async with HeroProcClient(socket_path) as hp:
        with pytest.raises(HeroProcUnavailable):
            await hp.secret_get("stripe_api_key")
        with pytest.raises(HeroProcUnavailable):
            await hp.ping()


def leave_stale_socket(path: Path) -> None:
    """A socket file nobody listens on, as a crashed server leaves it."""
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()
    assert path.is_socket()


def leave_a_regular_file(path: Path) -> None:
    path.write_text("not a socket")


@pytest.mark.parametrize(
    "leave", [leave_stale_socket, leave_a_regular_file], ids=["stale-socket", "regular-file"]
)
async def test_a_path_nobody_listens_on_means_unavailable(socket_path: Path, leave) -> None:
    leave(socket_path)
    async with HeroProcClient(socket_path) as hp:
        with pytest.raises(HeroProcUnavailable):
            await hp.secret_get("stripe_api_key")
        with pytest.raises(HeroProcUnavailable):
            await hp.ping()


async def test_the_fake_stopping_makes_it_unavailable(socket_path: Path, tmp_path: Path) -> None:
    async with (
        FakeHeroProc(log_dir=tmp_path).serving(socket_path),
        HeroProcClient(socket_path) as hp,
    ):
        await hp.ping()
    async with HeroProcClient(socket_path) as hp:
        with pytest.raises(HeroProcUnavailable):
            await hp.ping()


async def test_no_answer_in_time_is_an_error(fake: FakeHeroProc, socket_path: Path) -> None:
    fake.stalled = True
    async with HeroProcClient(socket_path, timeout_s=0.3) as hp:
        with pytest.raises(HeroProcError, match="did not answer") as caught:
            await hp.secret_get("stripe_api_key")
    assert caught.value.code is None


@contextlib.asynccontextmanager
async def answering(socket_path: Path, handler):
    """Not hero_proc: `handler` answers every request on the socket."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.UnixSite(runner, str(socket_path)).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def test_something_else_on_the_socket_is_an_error_not_absence(socket_path: Path) -> None:
    async def bad_gateway(_: web.Request) -> web.Response:
        return web.Response(status=502, text="<html>bad gateway</html>")

    async with answering(socket_path, bad_gateway), HeroProcClient(socket_path) as hp:
        with pytest.raises(HeroProcError, match="not JSON"):
            await hp.secret_get("stripe_api_key")
        with pytest.raises(HeroProcError, match="/health"):
            await hp.ping()


async def test_error_messages_echoing_a_secret_do_not_pass_it_on(socket_path: Path) -> None:
    """A careless server quoting what it was sent (or holds) in its errors."""

    async def echo_in_error(request: web.Request) -> web.Response:
        call = await request.json()
        message = f"cannot do {json.dumps(call['params'])} with {SECRET}"
        error = {"code": -32005, "message": message}
        return web.json_response({"jsonrpc": "2.0", "id": call["id"], "error": error})

    async with answering(socket_path, echo_in_error), HeroProcClient(socket_path) as hp:
        with pytest.raises(HeroProcError) as on_secret:
            await hp.secret_get("stripe_api_key")
        with pytest.raises(HeroProcError) as on_create:
            await hp.service_create(sleeper_spec(exec="true", env={"STRIPE_KEY": SECRET}))
    assert (on_secret.value.code, on_create.value.code) == (-32005, -32005)
    assert SECRET not in str(on_secret.value)
    assert SECRET not in str(on_create.value)
    assert "STRIPE_KEY" in str(on_create.value)  # the rest of hero_proc's message is kept


# -- services: really supervised ----------------------------------------------------------------


@pytest.mark.process
async def test_a_created_monitored_started_service_runs_until_stopped(
    hp: HeroProcClient, fake: FakeHeroProc
) -> None:
    spec = sleeper_spec()
    await hp.service_create(spec)
    assert await hp.service_status("sleeper") is None  # created is not yet supervised
    await hp.service_monitor("sleeper")
    await hp.service_start("sleeper")

    status = await hp.service_status("sleeper")
    assert status is not None
    assert status.running
    assert (status.state, status.target) == ("Running", "Up")
    process = psutil.Process(status.pid)
    assert process.is_running()
    assert SLEEPER in process.cmdline()
    assert os.getpgid(status.pid) == status.pid  # its own session, so stop reaches its children

    await logged(fake, "sleeper", f"{MARKER} token-from-env")
    assert await hp.service_list() == {"sleeper": "Running"}

    await hp.service_stop("sleeper")  # asks; SIGTERM's default action then ends it
    stopped = await exited(hp, "sleeper")
    assert not psutil.pid_exists(status.pid)  # reaped, not a zombie
    assert stopped == ServiceStatus(
        "sleeper", pid=0, state="Error(signal: 15 (SIGTERM))", target="Down"
    )
    assert not stopped.running
    await hp.service_stop("sleeper")  # stopping a stopped service is fine (zinit: Ok)

    await hp.service_forget("sleeper")
    assert await hp.service_status("sleeper") is None
    assert await hp.service_list() == {}
    await hp.service_delete("sleeper")
    await hp.service_create(spec)  # the name is free again
    assert fake.methods_called()[:3] == ["service_create", "service_status", "service_monitor"]
    assert FakeCall("service_stop", {"name": "sleeper"}) in fake.calls
    assert fake.calls[0].params == {
        "name": "sleeper",
        "content": {
            "exec": spec.exec,
            "env": {"HP_TOKEN": REDACTED},
            "after": [],
            "shutdown_timeout": 5,
            "log": "stdout",
        },
    }


async def test_creating_a_name_twice_is_already_exists(hp: HeroProcClient) -> None:
    await hp.service_create(sleeper_spec())
    with pytest.raises(HeroProcError) as caught:
        await hp.service_create(sleeper_spec(exec="true"))
    assert caught.value.code == ALREADY_EXISTS == -32007


@pytest.mark.process
async def test_a_running_service_cannot_be_forgotten_or_deleted(hp: HeroProcClient) -> None:
    await hp.service_create(sleeper_spec())
    await hp.service_monitor("sleeper")
    for refused in (hp.service_forget, hp.service_delete):
        with pytest.raises(HeroProcError) as caught:
            await refused("sleeper")
        assert caught.value.code == IS_UP == -32002
    status = await hp.service_status("sleeper")
    assert status is not None
    assert status.running  # refusing did not stop it either


async def test_unknown_services(hp: HeroProcClient) -> None:
    assert await hp.service_status("nobody") is None
    with pytest.raises(HeroProcError) as caught:
        await hp.service_start("nobody")
    assert caught.value.code == SERVICE_NOT_FOUND == -32000


@pytest.mark.process
async def test_stop_only_asks_and_returns_before_the_process_has_exited(
    hp: HeroProcClient, fake: FakeHeroProc, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    await hp.service_create(
        sleeper_spec(exec=shlex.join([sys.executable, "-c", GRACEFUL, str(release)]))
    )
    await hp.service_monitor("sleeper")
    await logged(fake, "sleeper", "ready")
    running = await hp.service_status("sleeper")
    assert running is not None

    await hp.service_stop("sleeper")
    await logged(fake, "sleeper", "got SIGTERM")
    # It has the signal, and it is still up: stop did not wait for it.
    stopping = await hp.service_status("sleeper")
    assert stopping == ServiceStatus("sleeper", running.pid, "Running", "Down")
    assert psutil.Process(running.pid).is_running()
    with pytest.raises(HeroProcError) as caught:
        await hp.service_forget("sleeper")
    assert caught.value.code == IS_UP

    release.touch()
    assert await exited(hp, "sleeper") == ServiceStatus("sleeper", 0, "Success", "Down")
    assert "done" in fake.log_of("sleeper")
    await hp.service_forget("sleeper")
    await hp.service_delete("sleeper")


@pytest.mark.process
async def test_a_service_ignoring_sigterm_stays_up_until_killed(
    hp: HeroProcClient, fake: FakeHeroProc
) -> None:
    # shutdown_timeout 0: had stop escalated after it, it would be gone at once.
    spec = sleeper_spec(exec=shlex.join([sys.executable, "-c", STUBBORN]), shutdown_timeout=0)
    await hp.service_create(spec)
    await hp.service_monitor("sleeper")
    await logged(fake, "sleeper", "ignoring")
    status = await hp.service_status("sleeper")
    assert status is not None

    await hp.service_stop("sleeper")
    await hp.service_stop("sleeper")  # asking again sends SIGTERM again: still ignored
    # An ignored signal is discarded as it is sent, so once stop has answered the process
    # is certainly still up, and stays so: these are refused however long one waits.
    after_stop = await hp.service_status("sleeper")
    assert after_stop == ServiceStatus("sleeper", status.pid, "Running", "Down")
    assert psutil.Process(status.pid).status() != psutil.STATUS_ZOMBIE
    for refused in (hp.service_forget, hp.service_delete):
        with pytest.raises(HeroProcError) as caught:
            await refused("sleeper")
        assert caught.value.code == IS_UP == -32002

    for bad in ("SIGNOPE", "TERM", "15", ""):
        with pytest.raises(HeroProcError) as caught:
            await hp.service_kill("sleeper", bad)
        assert caught.value.code == INVALID_SIGNAL == -32004
    assert fake.services["sleeper"].running  # a refused kill sent nothing

    await hp.service_kill("sleeper", "SIGKILL")
    killed = await exited(hp, "sleeper")
    assert killed.state == f"Error(signal: {int(signal.SIGKILL)} (SIGKILL))"
    assert killed.target == "Down"
    assert not psutil.pid_exists(status.pid)
    assert FakeCall("service_kill", {"name": "sleeper", "signal": "SIGKILL"}) in fake.calls

    with pytest.raises(HeroProcError) as caught:
        await hp.service_kill("sleeper", "SIGKILL")
    assert caught.value.code == IS_DOWN == -32003
    await hp.service_forget("sleeper")
    await hp.service_delete("sleeper")


@pytest.mark.process
async def test_teardown_kills_even_a_process_ignoring_sigterm(
    socket_path: Path, tmp_path: Path
) -> None:
    fake = FakeHeroProc(log_dir=tmp_path / "logs")
    async with fake.serving(socket_path), HeroProcClient(socket_path) as hp:
        await hp.service_create(sleeper_spec(exec=shlex.join([sys.executable, "-c", STUBBORN])))
        await hp.service_monitor("sleeper")
        await logged(fake, "sleeper", "ignoring")
        await hp.service_stop("sleeper")  # ignored: it is still up when the fake goes away
        status = await hp.service_status("sleeper")
        assert status is not None
        assert status.pid > 0
    assert not psutil.pid_exists(status.pid)  # SIGKILLed and reaped by the teardown


@pytest.mark.process
async def test_kill_takes_signal_names_in_any_case_and_does_not_change_the_target(
    hp: HeroProcClient,
) -> None:
    await hp.service_create(sleeper_spec())
    await hp.service_monitor("sleeper")
    await hp.service_kill("sleeper", "sigterm")
    killed = await exited(hp, "sleeper")
    assert (killed.state, killed.target) == ("Error(signal: 15 (SIGTERM))", "Up")
    with pytest.raises(HeroProcError) as caught:
        await hp.service_forget("sleeper")  # target Up: still refused though pid is 0
    assert caught.value.code == IS_UP
    with pytest.raises(HeroProcError) as caught:
        await hp.service_kill("nobody", "SIGKILL")
    assert caught.value.code == SERVICE_NOT_FOUND


@pytest.mark.process
async def test_the_stop_signal_comes_from_the_spec(
    hp: HeroProcClient, fake: FakeHeroProc, socket_path: Path
) -> None:
    """zinit's `signal: {stop: ...}` (ServiceSpec does not send it: the call is made raw)."""
    content = {**sleeper_spec().as_content(), "signal": {"stop": "sigint"}}
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:
        call = {"name": "sleeper", "content": content}
        request = {"jsonrpc": "2.0", "id": 1, "method": "service_create", "params": call}
        async with session.post("http://localhost/rpc", json=request) as response:
            assert "result" in await response.json()
    await hp.service_monitor("sleeper")
    await logged(fake, "sleeper", MARKER)
    await hp.service_stop("sleeper")
    assert (await exited(hp, "sleeper")).state == f"Error(signal: {int(signal.SIGINT)} (SIGINT))"


@pytest.mark.process
async def test_an_injected_failure_answers_instead_and_does_nothing(
    hp: HeroProcClient, fake: FakeHeroProc
) -> None:
    await hp.service_create(sleeper_spec("hero_onboarding_admin"))
    await hp.service_create(sleeper_spec("other"))
    fake.fail = {("service_monitor", "hero_onboarding_admin"): (-32005, "config error")}
    with pytest.raises(HeroProcError, match="config error") as caught:
        await hp.service_monitor("hero_onboarding_admin")
    assert caught.value.code == -32005
    assert await hp.service_status("hero_onboarding_admin") is None  # not monitored
    await hp.service_monitor("other")  # another name is not affected
    assert fake.methods_called().count("service_monitor") == 2  # the failed one is logged

    fake.fail[("service_stop", None)] = (-32011, "process error")  # None: every name
    with pytest.raises(HeroProcError) as caught:
        await hp.service_stop("other")
    assert caught.value.code == -32011
    status = await hp.service_status("other")
    assert status is not None
    assert status.running
    assert status.target == "Up"

    fake.fail = {}
    await hp.service_monitor("hero_onboarding_admin")
    assert (await hp.service_list()).keys() == {"hero_onboarding_admin", "other"}


@pytest.mark.process
async def test_unsupported_methods_are_method_not_found(
    hp: HeroProcClient, fake: FakeHeroProc, socket_path: Path
) -> None:
    fake.unsupported = {"service_status", "service_kill"}
    await hp.service_create(sleeper_spec())
    await hp.service_monitor("sleeper")
    for call in (lambda: hp.service_status("sleeper"), lambda: hp.service_kill("sleeper", "X")):
        with pytest.raises(HeroProcError) as caught:
            await call()
        assert caught.value.code == METHOD_NOT_FOUND == -32601
    assert fake.services["sleeper"].running
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.get("http://localhost/openrpc.json") as response,
    ):
        methods = {m["name"] for m in (await response.json())["methods"]}
    assert "service_monitor" in methods
    assert methods.isdisjoint(fake.unsupported)
    fake.unsupported = set()
    status = await hp.service_status("sleeper")
    assert status is not None
    assert status.running


@pytest.mark.process
@pytest.mark.parametrize(
    ("code", "state"), [(0, "Success"), (3, "Error(exit status: 3)")], ids=["ok", "failed"]
)
async def test_a_service_that_exits_shows_how(hp: HeroProcClient, code: int, state: str) -> None:
    await hp.service_create(
        sleeper_spec("quits", exec=shlex.join([sys.executable, "-c", f"raise SystemExit({code})"]))
    )
    await hp.service_monitor("quits")

    async def exited() -> bool:
        status = await hp.service_status("quits")
        return status is not None and status.pid == 0

    await wait_until_async(exited, timeout=10, what="the service exited")
    assert await hp.service_status("quits") == ServiceStatus("quits", 0, state, "Up")


# -- the wire protocol ----------------------------------------------------------------------------


async def test_the_fake_speaks_the_hero_socket_spec(fake: FakeHeroProc, socket_path: Path) -> None:
    connector = aiohttp.UnixConnector(path=str(socket_path))
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(body: str) -> tuple[int, Any]:
            async with session.post("http://localhost/rpc", data=body) as response:
                text = await response.text()
                return response.status, json.loads(text) if text else None

        status, answer = await post("{not json")
        assert status == 200
        assert answer == {"jsonrpc": "2.0", "id": None, "error": answer["error"]}
        assert answer["error"]["code"] == -32700

        _, answer = await post(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "secret_list"}))
        assert (answer["id"], answer["error"]["code"]) == (1, -32601)

        _, answer = await post("[]")
        assert answer["error"]["code"] == -32600
        _, answer = await post(json.dumps({"jsonrpc": "1.0", "id": 2, "method": "service_list"}))
        assert answer["error"]["code"] == -32600

        bad_params = {"jsonrpc": "2.0", "id": 3, "method": "secret_get", "params": {"key": "x"}}
        _, answer = await post(json.dumps(bad_params))
        assert answer["error"]["code"] == -32602

        positional = {"jsonrpc": "2.0", "id": 4, "method": "secret_get", "params": ["nope"]}
        _, answer = await post(json.dumps(positional))
        assert answer["error"]["code"] == -32020

        status, answer = await post(json.dumps({"jsonrpc": "2.0", "method": "service_list"}))
        assert (status, answer) == (204, None)

        async with session.get("http://localhost/health") as response:
            assert response.status == 200
            assert (await response.json())["status"] == "ok"
        async with session.get("http://localhost/.well-known/heroservice.json") as response:
            assert (await response.json())["protocol"] == "openrpc"
        async with session.get("http://localhost/openrpc.json") as response:
            methods = {m["name"] for m in (await response.json())["methods"]}
        assert {"secret_get", "service_create", "service_status", "service_kill"} <= methods


def test_service_spec_content_is_zinits_yaml_and_its_repr_hides_env() -> None:
    spec = ServiceSpec("svc", "run --flag", {"TOKEN": SECRET}, after=("db",), log="ring")
    assert spec.as_content() == {
        "exec": "run --flag",
        "env": {"TOKEN": SECRET},
        "after": ["db"],
        "shutdown_timeout": 10,
        "log": "ring",
    }
    assert SECRET not in repr(spec)


# -- from a sync test, with a subprocess as the client ------------------------------------------

CLIENT_SCRIPT = textwrap.dedent(
    """
    import asyncio, shlex, sys
    from pathlib import Path
    from hero_onboarding.rpc.hero_proc import HeroProcClient, ServiceSpec

    async def main():
        async with HeroProcClient(Path(sys.argv[1])) as hp:
            print(await hp.secret_get("stripe_api_key"))
            argv = [sys.executable, "-c", "import time\\nwhile True: time.sleep(0.05)"]
            await hp.service_create(ServiceSpec("bg", shlex.join(argv), {}))
            await hp.service_monitor("bg")
            print((await hp.service_status("bg")).pid)

    asyncio.run(main())
    """
)


@pytest.mark.process
def test_the_threaded_fake_serves_a_subprocess_and_kills_what_it_spawned(tmp_path: Path) -> None:
    sock_dir = short_socket_dir()
    try:
        with running_fake_hero_proc(
            sock_dir / "rpc.sock", log_dir=tmp_path / "logs", secrets=SECRETS
        ) as fake:
            done = subprocess.run(
                [sys.executable, "-c", CLIENT_SCRIPT, str(sock_dir / "rpc.sock")],
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            value, pid = done.stdout.split()
            assert value == SECRET
            assert psutil.Process(int(pid)).is_running()
            assert fake.methods_called() == [
                "secret_get",
                "service_create",
                "service_monitor",
                "service_status",
            ]
        wait_until(lambda: not psutil.pid_exists(int(pid)), timeout=10, what="the service is gone")
        assert not (sock_dir / "rpc.sock").exists()
    finally:
        shutil.rmtree(sock_dir, ignore_errors=True)
