"""Services forked from one process that has imported them already (a fork server), for the tests and the bench.

A service started as ``python -m launch.cli NAME`` spends about 1.2 CPU-seconds importing FastAPI, pydantic,
aiokafka and its own modules before it does anything, and the suite starts some 400 of them. Here one server process
(``python -m launch.prefork FD``; one per test process) imports every service's modules once, then forks a child per
request, which becomes exactly what ``python -m MODULE ARGS`` would have been (``launch.cli`` unless the request
names another module, such as the bench's peers): ``launch.cli.main(ARGS)`` with the request's environment, working
directory, descriptor limit, and its output in the request's log file.

The children are the server's, not the caller's: ``ForkedProcess`` is the part of ``subprocess.Popen`` the tests and
the bench use (``pid``, ``poll``, ``wait``, ``send_signal``, ``terminate``, ``kill``, ``returncode``), fed by the
server, which reaps each child and writes its exit status (``Popen``'s convention: ``-N`` for signal N) on the
connection that asked for it. Another process reaches a running server by its address
(``ServiceLauncher.connect``): the bench does, when the tests hand it theirs in ``$LOCSTREAM_PREFORK_SOCKET``.

The server never starts a thread or an event loop, so a fork of it is as clean as a fresh interpreter; ``random``
reseeds itself in a forked child.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import resource
import runpy
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# What each child would import anyway: the command, every service's app, and the server under them.
_PRELOADED = (
    "launch.cli",
    "locstream.serve",
    "locstream.logs",
    "producers.app",
    "projector.app",
    "ws_edge.app",
    "geofencer.app",
)


@dataclass(frozen=True)
class Request:
    """One child: ``python -m MODULE *argv`` with this environment, directory, output and descriptor limit."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    log_path: str
    max_open_files: int | None = None
    module: str = "launch.cli"

    def encode(self) -> bytes:
        return json.dumps(self.__dict__).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> Request:
        return cls(**json.loads(line))


class ForkedProcess:
    """A child of the fork server, seen as the ``subprocess.Popen`` the tests would otherwise hold."""

    def __init__(self, connection: socket.socket, pid: int, argv: list[str], received: bytes = b"") -> None:
        self._connection = connection
        self._buffer = received  # what the server sent after the pid (its exit status, if the child was that quick)
        self.pid = pid
        self.args = argv
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self._read(timeout=0.0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None and not self._read(timeout=timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # as Popen: never signal a pid that may have been reused
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _read(self, timeout: float | None) -> bool:
        """Read the exit status if it comes within ``timeout`` (None: wait for it); True once it is known."""
        self._connection.settimeout(timeout)
        try:
            while b"\n" not in self._buffer:
                chunk = self._connection.recv(256)
                if not chunk:
                    raise RuntimeError(f"the fork server went away before child {self.pid} ended")
                self._buffer += chunk
        except (TimeoutError, BlockingIOError):
            return False
        self.returncode = int(json.loads(self._buffer.split(b"\n", 1)[0])["returncode"])
        self._connection.close()
        return True


# Where a process that did not start the fork server finds it (the bench, started by a test).
ADDRESS_ENV = "LOCSTREAM_PREFORK_SOCKET"


class ServiceLauncher:
    """The caller's side: starts the fork server (``start``), asks it for children (``spawn``), ``stop``; or, made
    by ``connect``, asks a server another process started."""

    def __init__(self) -> None:
        self._directory: tempfile.TemporaryDirectory[str] | None = tempfile.TemporaryDirectory(
            prefix="locstream-prefork-"
        )
        self._address = str(Path(self._directory.name) / "server.sock")
        self._server: subprocess.Popen[bytes] | None = None

    @classmethod
    def connect(cls, address: str) -> ServiceLauncher:
        """A launcher for the server listening at ``address``, which its starter owns and stops."""
        launcher = cls.__new__(cls)
        launcher._directory, launcher._address, launcher._server = None, address, None
        return launcher

    @property
    def address(self) -> str:
        return self._address

    def start(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self._address)
        listener.listen(64)
        with listener, open(self._log, "wb") as out:
            self._server = subprocess.Popen(
                [sys.executable, "-m", "launch.prefork", str(listener.fileno())],
                pass_fds=[listener.fileno()],
                stdin=subprocess.PIPE,  # the server ends when this process does (end of file)
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def spawn(
        self,
        argv: list[str],
        *,
        env: dict[str, str],
        log_path: Path,
        max_open_files: int | None = None,
        module: str = "launch.cli",
        cwd: Path | None = None,
    ) -> ForkedProcess:
        """``python -m MODULE *argv`` in ``cwd`` (default: this process's), forked; waits only for the fork, not for
        the server's imports twice."""
        owned = self._directory is not None
        if owned and (self._server is None or self._server.poll() is not None):
            raise RuntimeError(f"the fork server is not running; see {self._log}")
        request = Request(list(argv), dict(env), str(cwd or os.getcwd()), str(log_path), max_open_files, module)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self._address)
        connection.sendall(request.encode())
        connection.settimeout(120.0)  # the first request waits for the server's imports
        reply = b""
        while b"\n" not in reply:
            chunk = connection.recv(256)
            if not chunk:
                raise RuntimeError(f"the fork server refused {argv}; see {self._log}")
            reply += chunk
        line, rest = reply.split(b"\n", 1)
        return ForkedProcess(connection, int(json.loads(line)["pid"]), [module, *argv], rest)

    @property
    def _log(self) -> str:
        return str(Path(self._address).parent / "server.log")

    def stop(self) -> None:
        if self._server is not None:
            assert self._server.stdin is not None
            self._server.stdin.close()
            try:
                self._server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._server.kill()
                self._server.wait()
            self._server = None
        if self._directory is not None:
            self._directory.cleanup()


_shared: ServiceLauncher | None = None


def shared_launcher() -> ServiceLauncher:
    """This test process's fork server, started on first use (``stop_shared_launcher`` ends it)."""
    global _shared
    if _shared is None:
        _shared = ServiceLauncher()
        _shared.start()
    return _shared


def stop_shared_launcher() -> None:
    global _shared
    if _shared is not None:
        _shared.stop()
        _shared = None


# The server's side.


def _serve(listener: socket.socket) -> None:
    for name in _PRELOADED:
        importlib.import_module(name)
    children: dict[int, tuple[int, socket.socket]] = {}  # pidfd -> (pid, the connection that asked for it)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "request")
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "parent")
    while True:
        for key, _ in selector.select():
            if key.data == "parent":
                if not os.read(sys.stdin.fileno(), 4096):
                    return  # the test process is gone; its children are its business (as with Popen)
            elif key.data == "request":
                connection, _ = listener.accept()
                request = _read_request(connection)
                if request is None:
                    connection.close()
                    continue
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    _become(request)  # never returns
                with contextlib.suppress(OSError):  # the asker gone already: the child is reaped all the same
                    connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
                pidfd = os.pidfd_open(pid)
                children[pidfd] = (pid, connection)
                selector.register(pidfd, selectors.EVENT_READ, "child")
            else:
                pidfd = key.fd
                pid, connection = children.pop(pidfd)
                selector.unregister(pidfd)
                os.close(pidfd)
                _, status = os.waitpid(pid, 0)
                with contextlib.suppress(OSError), connection:
                    connection.sendall(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}).encode() + b"\n")


def _read_request(connection: socket.socket) -> Request | None:
    connection.settimeout(10.0)
    data = b""
    try:
        while not data.endswith(b"\n"):
            chunk = connection.recv(65536)
            if not chunk:
                return None
            data += chunk
        return Request.decode(data)
    except (OSError, ValueError, TypeError) as exc:
        sys.stderr.write(f"prefork: a bad request: {exc!r}\n")
        return None


def _become(request: Request) -> None:
    """In the child: turn into ``python -m MODULE *argv`` and exit with its code."""
    code: Any = 1
    try:
        log = os.open(request.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.closerange(3, resource.getrlimit(resource.RLIMIT_NOFILE)[0])  # the listener, pidfds, siblings' sockets
        if request.max_open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (request.max_open_files, request.max_open_files))
        os.environ.clear()
        os.environ.update(request.env)
        os.chdir(request.cwd)
        sys.argv = [request.module, *request.argv]
        if request.module == "launch.cli":
            from launch.cli import main

            code = main(request.argv)
        else:
            runpy.run_module(request.module, run_name="__main__", alter_sys=True)
            code = 0
    except SystemExit as exc:
        code = exc.code
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()  # what the interpreter would do at exit (logging's flush among them)
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        if code is None:
            code = 0
        elif not isinstance(code, int):
            sys.stderr.write(f"{code}\n")
            sys.stderr.flush()
            code = 1
        os._exit(code)


if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])))
