"""Running ``ellity`` as an operator does: real processes, a clean environment, free ports."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

ELLITY = [sys.executable, "-m", "ellity.cli"]


def clean_env() -> dict[str, str]:
    """This environment without any ``ELLITY_*`` setting: the command's defaults apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_")}


def run_ellity(
    workdir: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``env``: settings on top of ``clean_env()``."""
    return subprocess.run(
        [*ELLITY, *args],
        cwd=workdir,
        env={**clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(
    workdir: Path, port: int, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """``ellity serve`` on ``port`` with the defaults (or ``args`` and ``env`` settings on
    top of ``clean_env()``), its output (stdout and stderr) piped."""
    return subprocess.Popen(
        [*ELLITY, "serve", "--port", str(port), *args],
        cwd=workdir,
        env={**clean_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def first_answer(server: subprocess.Popen[str], send: Callable[[], T], *, within: float = 30) -> T:
    """What ``send`` returns once the server answers at all (it may still be starting)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return send()
        except httpx.TransportError:
            if time.monotonic() > deadline or server.poll() is not None:
                raise
            time.sleep(0.2)


#: What every log line of ``ellity serve`` and ``ellity worker`` has (``ellity.logs``).
LOG_KEYS = frozenset({"timestamp", "level", "logger", "event"})


def log_events(output: str) -> list[dict[str, Any]]:
    """Each line of a process's output as the JSON object it must be (raises on any other)."""
    events = []
    for line in output.splitlines():
        event = json.loads(line)
        if not isinstance(event, dict) or not event.keys() >= LOG_KEYS:
            raise ValueError(f"not a log line of Ellity's: {line!r}")
        events.append(event)
    return events


def logged(output: str) -> str:
    """The messages (``event``) of a process's JSON log lines, one a line."""
    return "\n".join(str(event["event"]) for event in log_events(output))


class OutputLines:
    """A piped process's output, read line by line as it comes (while the test goes on)."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        if process.stdout is None:
            raise ValueError("the process's output is not piped")
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, args=(process.stdout,), daemon=True)
        self._thread.start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self._lock:
                self._lines.append(line)

    def text(self) -> str:
        with self._lock:
            return "".join(self._lines)

    def finish(self, *, within: float = 15) -> str:
        """All of it, once the process has closed its output."""
        self._thread.join(timeout=within)
        return self.text()
