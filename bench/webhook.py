"""Benchmark of the newsletter webhook's intake against the same server's ``/health``.

Works on a fresh database of its own (made by the run, on SQLite or PostgreSQL), creates a
merchant with an active Ecomail integration and its webhook URL, then
serves the app (``create_app`` + ``build_deps``, as ``ellity serve`` does, without the worker)
with uvicorn in a subprocess. ``--senders`` concurrent keep-alive connections then send, for
``--seconds`` each and in the same run: ``GET /health`` (one ``SELECT 1``), then Ecomail's
notifications ``POST /webhooks/ecomail/{token}`` (each a different subscriber; each stored
with one ``INSERT``), then ``/health`` again. Every answer must be 200 and every accepted
notification must be stored. Figures: requests per second of each and the ratio
webhook / health (target ≥ 0.5); ``/health`` is the webhook's floor.

The senders are a minimal HTTP/1.1 client on asyncio streams in this process, so the load
generator costs little of the machine the server shares.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from benchdb import BenchDatabase, session

from ellity.bootstrap import build_deps
from ellity.domain.model.merchant import MerchantSettings
from ellity.domain.model.money import Points
from ellity.domain.services import merchants, newsletter_intake
from ellity.settings import load_settings

RATIO_TARGET = 0.5
SECRET = "bench-secret-key"

SERVER = """
import sys
import uvicorn
from ellity.bootstrap import build_deps
from ellity.settings import load_settings
from ellity.web.app import create_app

settings = load_settings()
app = create_app(lambda: build_deps(settings))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(database_url: str, var_dir: Path, base_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ELLITY_") and k != "REDIS_URL"}
    env.update(
        ELLITY_DATABASE_URL=database_url,
        ELLITY_VAR_DIR=str(var_dir),
        ELLITY_SECRET_KEY=SECRET,
        ELLITY_BASE_URL=base_url,
    )
    return env


async def prepare(env: dict[str, str]) -> str:
    """A merchant with an active integration (no Ecomail call needed) and its webhook URL."""
    settings = load_settings(env, dotenv=Path("/nonexistent"))
    async with build_deps(settings) as deps:
        merchant = await merchants.create_merchant(
            slug="webhook-bench",
            settings=MerchantSettings(name="Webhook bench", newsletter_reward=Points(5000)),
            admin_email="admin@webhook-bench.example.cz",
            admin_password="webhook bench password",
            uow=deps.uow(),
            clock=deps.clock,
            hasher=deps.hasher,
        )
        if merchant.id is None:
            raise RuntimeError("the merchant was not stored")
        async with deps.uow() as uow:
            now = deps.clock.now()
            await uow.ecomail.save_key(merchant.id, encrypted="-", hint="none", at=now)
            await uow.ecomail.activate(merchant.id, list_id="1", list_name="Bench", at=now)
            await uow.commit()
        url: str = await newsletter_intake.webhook_address(
            merchant.id,
            uow_factory=deps.uow,
            secret_box=deps.secret_box,
            rng=deps.rng,
            clock=deps.clock,
            base_url=settings.base_url,
        )
        return url


def start_server(env: dict[str, str], port: int, var_dir: Path) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env, cwd=var_dir)  # noqa: S603
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError("the app did not start")
        time.sleep(0.2)


class Sender:
    """One keep-alive HTTP/1.1 connection sending requests one after another."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, raw: bytes) -> int:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if length:
            await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


def health_request(port: int, _n: int) -> bytes:
    return f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def webhook_request(port: int, path: str, list_id: int) -> Any:
    def build(n: int) -> bytes:
        body = json.dumps(
            {
                "payload": {
                    "email": f"subscriber{n}@bench.example.cz",
                    "status": "SUBSCRIBED",
                    "listId": list_id,
                    "campaignId": None,
                }
            }
        ).encode()
        return (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    return build


async def hammer(port: int, build: Any, senders: int, seconds: float) -> dict[str, Any]:
    """``senders`` connections sending for ``seconds`` (after a one-second warm-up)."""
    counter = iter(range(10**9))
    ok = failed = 0
    measuring = False
    stop = False

    async def send() -> None:
        nonlocal ok, failed
        sender = Sender(port)
        try:
            while not stop:
                status = await sender.request(build(next(counter)))
                if measuring:
                    if status == 200:
                        ok += 1
                    else:
                        failed += 1
        finally:
            await sender.close()

    tasks = [asyncio.create_task(send()) for _ in range(senders)]
    await asyncio.sleep(1.0)  # warm-up: connections open, caches and pools filled
    measuring, started = True, time.perf_counter()
    await asyncio.sleep(seconds)
    measuring, elapsed = False, time.perf_counter() - started
    stop = True
    await asyncio.gather(*tasks)
    if failed:
        raise RuntimeError(f"{failed} requests were not answered 200")
    return {"requests": ok, "seconds": elapsed, "per_second": ok / elapsed}


def stored_notifications(database: BenchDatabase) -> int:
    sql = session(database)
    try:
        return int(sql.value("SELECT count(*) FROM newsletter_notifications"))
    finally:
        sql.close()


def run(database: BenchDatabase, *, senders: int = 64, seconds: float = 10.0) -> dict[str, Any]:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        var_dir = Path(tmp)
        env = environment(database.url, var_dir, f"http://127.0.0.1:{port}")
        url = asyncio.run(prepare(env))
        path = "/" + url.split("/", 3)[3]
        server = start_server(env, port, var_dir)
        try:
            print(
                f"Webhook intake vs /health, {senders} concurrent senders, {seconds:g} s each ...",
                flush=True,
            )
            health = asyncio.run(hammer(port, lambda n: health_request(port, n), senders, seconds))
            webhook = asyncio.run(hammer(port, webhook_request(port, path, 1), senders, seconds))
            health_again = asyncio.run(
                hammer(port, lambda n: health_request(port, n), senders, seconds)
            )
        finally:
            server.terminate()
            server.wait(timeout=15)
    stored = stored_notifications(database)
    if stored < webhook["requests"]:
        raise RuntimeError(f"{webhook['requests']} notifications accepted, only {stored} stored")
    health_rate = (health["per_second"] + health_again["per_second"]) / 2
    return {
        "senders": senders,
        "seconds": seconds,
        "health_per_second": health_rate,
        "health_runs": [health, health_again],
        "webhook": webhook,
        "ratio": webhook["per_second"] / health_rate,
        "ratio_target": RATIO_TARGET,
        "stored": stored,
    }
