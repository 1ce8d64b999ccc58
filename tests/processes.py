"""Running ``ellity`` as an operator does: real processes, a clean environment, free ports."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ELLITY = [sys.executable, "-m", "ellity.cli"]


def clean_env() -> dict[str, str]:
    """This environment without any ``ELLITY_*`` setting: the command's defaults apply."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_")}


def run_ellity(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ELLITY, *args],
        cwd=workdir,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
