"""The options of ``ellity serve`` as uvicorn receives them, and the refusals."""

from __future__ import annotations

import argparse

import pytest

from ellity.serve import ServerOptions, add_arguments, check_arguments


def parser() -> argparse.ArgumentParser:
    serve = argparse.ArgumentParser(prog="ellity serve")
    add_arguments(serve)
    return serve


def uvicorn_options(*args: str) -> dict[str, object]:
    serve = parser()
    parsed = serve.parse_args(args)
    check_arguments(serve, parsed)
    return ServerOptions.from_args(parsed).uvicorn_options()


def test_by_default_one_process_keeps_idle_connections_75_s_and_ignores_forwarded_headers() -> None:
    assert uvicorn_options() == {
        "host": "127.0.0.1",
        "port": 8000,
        "workers": 1,
        "timeout_keep_alive": 75,  # longer than the 60 s of common clients and proxies
        "proxy_headers": False,
        "forwarded_allow_ips": ["127.0.0.1"],
        "log_level": "info",
        "log_config": None,  # uvicorn's lines are rendered by Ellity's own format
    }


def test_workers_keep_alive_and_the_trusted_proxies_are_passed_on() -> None:
    options = uvicorn_options(
        "--host",
        "0.0.0.0",  # noqa: S104 - what an operator behind a firewall types
        "--port",
        "9000",
        "--workers",
        "3",
        "--keep-alive",
        " 120 ",
        "--proxy-headers",
        "--forwarded-allow-ips",
        "10.0.0.5, 192.168.0.0/16,::1",
    )
    assert options["host"] == "0.0.0.0"  # noqa: S104
    assert options["port"] == 9000
    assert options["workers"] == 3
    assert options["timeout_keep_alive"] == 120
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["10.0.0.5", "192.168.0.0/16", "::1"]


def test_proxy_headers_alone_trust_only_a_proxy_on_the_same_machine() -> None:
    options = uvicorn_options("--proxy-headers")
    assert options["proxy_headers"] is True
    assert options["forwarded_allow_ips"] == ["127.0.0.1"]
    assert uvicorn_options("--proxy-headers", "--forwarded-allow-ips", "*")[
        "forwarded_allow_ips"
    ] == ["*"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "0"], "the number of worker processes must be a whole number from 1 to 64"),
        (["--workers", "two"], "the number of worker processes must be a whole number"),
        (["--workers", "65"], "from 1 to 64, not '65'"),
        (["--keep-alive", "0"], "the keep-alive timeout must be a whole number from 1 to 3600"),
        (["--keep-alive", "7.5"], "the keep-alive timeout must be a whole number"),
        (["--keep-alive", "-5"], "the keep-alive timeout must be a whole number"),
        (["--port", "70000"], "the port must be a whole number from 0 to 65535"),
        (
            ["--proxy-headers", "--forwarded-allow-ips", "10.0.0.1,proxy.local"],
            "'proxy.local' is neither an IP address, a network (10.0.0.0/8) nor *",
        ),
        (
            ["--proxy-headers", "--forwarded-allow-ips", "10.0.0.1,"],
            "'' is neither an IP address",
        ),
        (
            ["--forwarded-allow-ips", "10.0.0.1"],
            "--forwarded-allow-ips works only with --proxy-headers",
        ),
    ],
)
def test_bad_server_options_are_refused_with_exit_code_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        uvicorn_options(*args)
    assert refused.value.code == 2
    assert message in capsys.readouterr().err
