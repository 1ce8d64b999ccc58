"""``ellity serve``'s server options, on real processes (see tests/processes.py)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from ellity.adapters.embedded_redis import embedded_redis
from tests.processes import first_answer, free_port, logged, run_ellity, start_serve

IDLE = 6.0  # longer than uvicorn's own default keep-alive (5 s), which httpx's pool outlives


def local_port(response: httpx.Response) -> int:
    """The client's end of the connection the response came on."""
    return int(response.extensions["network_stream"].get_extra_info("client_addr")[1])


def stop(server: subprocess.Popen[str]) -> str:
    server.terminate()
    output, _ = server.communicate(timeout=15)
    return output


def test_an_idle_connection_is_still_usable_after_seconds_and_proxies_are_believed_when_told(
    tmp_path: Path,
) -> None:
    port = free_port()
    server = start_serve(
        tmp_path,
        port,
        "--keep-alive",
        "75",
        "--proxy-headers",
        "--forwarded-allow-ips",
        "127.0.0.1",
    )
    limits = httpx.Limits(max_connections=1, keepalive_expiry=60)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
            first = first_answer(server, lambda: client.get("/health", timeout=2))
            first_port = local_port(first)
            time.sleep(IDLE)
            again = client.get("/health", headers={"X-Forwarded-For": "203.0.113.7"}, timeout=2)
            again_port = local_port(again)
    finally:
        output = stop(server)
    assert first.status_code == again.status_code == 200
    assert again_port == first_port  # the same connection, not a new one
    assert '203.0.113.7:0 - "GET /health HTTP/1.1" 200' in logged(output)


def test_forwarded_headers_are_ignored_by_default(tmp_path: Path) -> None:
    port = free_port()
    server = start_serve(tmp_path, port)
    try:
        answer = first_answer(
            server,
            lambda: httpx.get(
                f"http://127.0.0.1:{port}/health",
                headers={"X-Forwarded-For": "203.0.113.7"},
                timeout=2,
            ),
        )
    finally:
        output = stop(server)
    assert answer.status_code == 200
    assert "203.0.113.7" not in output


def spawned_children(pid: int) -> list[str]:
    """The command lines of the processes ``multiprocessing`` spawned for ``pid``."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    lines = [Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ") for child in children]
    return [line.decode() for line in lines if b"spawn_main" in line]


def test_two_worker_processes_share_the_port_and_mask_webhook_tokens(tmp_path: Path) -> None:
    token = "sc5hQATgpJIJpJPHZf8vIt7-fa_t1FTzzcTCf5lsuVE"
    port = free_port()
    with embedded_redis(tmp_path / "redis.log", data_dir=tmp_path / "redis") as redis_url:
        started = time.monotonic()
        server = start_serve(tmp_path, port, "--workers", "2", env={"REDIS_URL": redis_url})
        try:
            health = first_answer(
                server, lambda: httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            )
            took = time.monotonic() - started
            assert len(spawned_children(server.pid)) == 2
            webhook = httpx.post(f"http://127.0.0.1:{port}/webhooks/ecomail/{token}", json={})
        finally:
            output = stop(server)
    assert health.status_code == 200, output
    assert health.json() == {"status": "ok", "database": "ok"}
    assert webhook.status_code == 404
    assert logged(output).count("Started server process") == 2
    assert '"POST /webhooks/ecomail/… HTTP/1.1" 404' in logged(output)
    assert token not in output
    assert took < 30


def test_more_than_one_web_process_needs_redis(tmp_path: Path) -> None:
    refused = run_ellity(tmp_path, "serve", "--workers", "2", env={"REDIS_URL": ""})
    assert refused.returncode == 2
    assert "--workers above 1 needs REDIS_URL" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "var" / "ellity.db").exists()  # refused before migrating


def test_a_bad_pool_setting_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    refused = run_ellity(tmp_path, "migrate", env={"ELLITY_DB_POOL_SIZE": "lots"})
    assert refused.returncode == 2
    assert "ELLITY_DB_POOL_SIZE must be a whole number from 1 to 1000, not 'lots'" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr


def test_a_bad_server_option_is_refused_before_anything_starts(tmp_path: Path) -> None:
    refused = run_ellity(tmp_path, "serve", "--keep-alive", "forever")
    assert refused.returncode == 2
    assert "the keep-alive timeout must be a whole number from 1 to 3600" in refused.stderr
    assert not (tmp_path / "var").exists()
