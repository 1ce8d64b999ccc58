"""Wall time and peak memory of a child process, measured without the bench's own memory.

A process's peak RSS as the kernel reports it (``ru_maxrss``) includes the memory of the
process it was forked from, up to the ``exec``: a child of the bench's own large process
would report at least the bench's size. So the command runs under a small launcher (Python
without ``site``, about 10 MB), which forks it, waits for it, and writes down its wall time,
peak RSS and exit status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import IO, Any

LAUNCHER = """
import os, sys, time
started = time.perf_counter()
child = os.fork()
if child == 0:
    os.execv(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(child, 0)
seconds = time.perf_counter() - started
with open(sys.argv[1], "w") as out:
    out.write(f"{seconds} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}")
"""


def run_measured(
    command: list[str],
    *,
    stdout: IO[Any] | int,
    env: dict[str, str],
    cwd: Path | None = None,
    stderr: IO[Any] | int | None = None,
) -> dict[str, float]:
    """Run ``command`` (its first item a path); it must succeed. Wall seconds and peak RSS
    (MB). Interrupted, the command is killed."""
    with tempfile.TemporaryDirectory() as folder, tempfile.TemporaryFile() as errors:
        result = Path(folder) / "result"
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-S", "-I", "-c", LAUNCHER, str(result), *command],
            stdout=stdout,
            stderr=errors if stderr is None else stderr,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: killed together
        )
        try:
            process.wait()
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
        seconds, rss_kib, code = result.read_text().split()
        if process.returncode != 0 or int(code) != 0:
            errors.seek(0)
            message = errors.read().decode(errors="replace")
            raise RuntimeError(f"{command[0]} failed ({code}): {message}")
    return {"seconds": float(seconds), "peak_rss_mb": int(rss_kib) / 1024}
