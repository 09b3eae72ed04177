"""The fork server gives the tests and the bench what ``python -m launch.cli ...`` (or another module) as a ``Popen``
gave them: the command's environment, directory, output, descriptor limit, exit code and signals; and another process
reaches it by its address."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest

from launch.prefork import Request, ServiceLauncher
from tests.support.ports import free_port

SECRET = "a-secret-for-the-fork-server-test-0123456789"


@pytest.fixture(scope="module")
def launcher() -> Iterator[ServiceLauncher]:
    launcher = ServiceLauncher()
    launcher.start()
    yield launcher
    launcher.stop()


def test_a_command_runs_with_the_requests_environment_and_its_output_goes_to_the_log(
    launcher: ServiceLauncher, tmp_path: Path
) -> None:
    log = tmp_path / "token.log"
    env = {**os.environ, "LOCSTREAM_JWT_SECRET": SECRET}
    process = launcher.spawn(["token", "--tenant", "t-1", "--sub", "me", "--role", "dispatcher"], env=env, log_path=log)
    assert process.wait(timeout=30) == 0
    claims = jwt.decode(log.read_text().strip(), SECRET, algorithms=["HS256"], options={"verify_aud": False})
    assert (claims["tenant_id"], claims["sub"]) == ("t-1", "me")


def test_another_module_runs_as_its_main_and_another_process_reaches_the_server_by_its_address(
    launcher: ServiceLauncher, tmp_path: Path
) -> None:
    log = tmp_path / "json.log"
    (tmp_path / "in.json").write_text('{"b": 1, "a": [2]}')
    elsewhere = ServiceLauncher.connect(launcher.address)  # what the bench does with $LOCSTREAM_PREFORK_SOCKET
    tool = elsewhere.spawn(
        ["--sort-keys", "--compact", "in.json"], env=dict(os.environ), log_path=log, module="json.tool", cwd=tmp_path
    )
    assert tool.wait(timeout=30) == 0
    assert log.read_text().strip() == '{"a":[2],"b":1}'
    elsewhere.stop()  # a launcher that did not start the server leaves it running
    failing = launcher.spawn(["no-such-file.json"], env=dict(os.environ), log_path=log, module="json.tool")
    as_a_process = subprocess.run([sys.executable, "-m", "json.tool", "no-such-file.json"], capture_output=True)
    assert failing.wait(timeout=30) == as_a_process.returncode != 0


def test_exit_codes_come_back_as_popen_gives_them(launcher: ServiceLauncher, tmp_path: Path) -> None:
    usage = launcher.spawn(["token", "--tenant"], env=dict(os.environ), log_path=tmp_path / "usage.log")
    assert usage.wait(timeout=30) == 2
    assert "expected one argument" in (tmp_path / "usage.log").read_text()
    # A service whose broker is not there ends with the reason in its log (nothing listens on port 9 here).
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "LOCSTREAM_JWT_SECRET": SECRET}
    env["LOCSTREAM_DATA_DIR"] = str(tmp_path / "data")
    api = launcher.spawn(["producers", "--port", str(free_port())], env=env, log_path=tmp_path / "api.log")
    assert api.wait(timeout=60) == 3
    assert api.poll() == 3
    assert "cannot reach Kafka at 127.0.0.1:9" in (tmp_path / "api.log").read_text()


def test_a_running_child_can_be_waited_for_with_a_timeout_signalled_and_has_its_descriptor_limit(
    launcher: ServiceLauncher, kafka_bootstrap: str, tmp_path: Path
) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "LOCSTREAM_JWT_SECRET": SECRET}
    env["LOCSTREAM_DATA_DIR"] = str(tmp_path / "data")
    env["KAFKA_TOPIC"] = f"locations.test.prefork.{os.getpid()}"
    log = tmp_path / "projector.log"
    projector = launcher.spawn(["projector", "--port", str(free_port())], env=env, log_path=log, max_open_files=300)
    with pytest.raises(subprocess.TimeoutExpired):
        projector.wait(timeout=0.5)
    assert projector.poll() is None
    limits = Path(f"/proc/{projector.pid}/limits").read_text().splitlines()
    assert any(line.startswith("Max open files") and line.split()[3:5] == ["300", "300"] for line in limits)
    projector.send_signal(signal.SIGKILL)
    assert projector.wait(timeout=30) == -signal.SIGKILL
    projector.kill()  # a child that is gone is not signalled again (its pid may be another process's by now)


def test_an_asker_that_goes_away_or_sends_garbage_leaves_the_server_serving(
    launcher: ServiceLauncher, tmp_path: Path
) -> None:
    log = tmp_path / "gone.log"
    for payload in (
        Request(["token", "--tenant", "t", "--sub", "s"], dict(os.environ), str(tmp_path), str(log)).encode(),
        b"not json\n",
        b'{"argv": 1}\n',
        b"",
    ):
        asker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        asker.connect(launcher.address)
        asker.sendall(payload)
        asker.close()  # before the pid, let alone the exit status, comes back
    env = {**os.environ, "LOCSTREAM_JWT_SECRET": SECRET}
    after = launcher.spawn(
        ["token", "--tenant", "t-2", "--sub", "me", "--role", "dispatcher"], env=env, log_path=tmp_path / "after.log"
    )
    assert after.wait(timeout=30) == 0
    assert (
        jwt.decode(
            (tmp_path / "after.log").read_text().strip(), SECRET, algorithms=["HS256"], options={"verify_aud": False}
        )["tenant_id"]
        == "t-2"
    )
