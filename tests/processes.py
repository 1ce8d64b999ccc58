"""Running ``ellity`` as an operator does: real processes, a clean environment, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

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
