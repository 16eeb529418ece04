"""What ``tradehall up`` starts (flags of each child), what it prints, and its CLI checks."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from services import free_ports
from tradehall.cli import main
from tradehall.platform.console import ChildLines, render_line, summary
from tradehall.platform.monitor import VenueMonitor
from tradehall.platform.plan import PlatformConfig, build_plan, connect_host, urls


def flag(argv: list[str] | tuple[str, ...], name: str) -> str:
    args = list(argv)
    return args[args.index(name) + 1]


def test_children_start_in_dependency_order_with_their_own_ports_and_dirs() -> None:
    config = PlatformConfig(
        sim=True, exchange_port=1001, gateway_port=1002, tap_port=1003, data_dir=Path("/d")
    )
    specs = build_plan(config)
    assert [s.name for s in specs] == ["exchange", "gateway", "tap", "bots"]
    exchange, gateway, tap, bots = (list(s.argv) for s in specs)
    assert exchange[exchange.index("-m") + 1 :][:1] == ["tradehall"]
    assert flag(exchange, "--port") == "1001"
    assert flag(exchange, "--data-dir") == "/d/exchange"
    assert flag(gateway, "--port") == "1002"
    assert flag(gateway, "--tradehall-url") == "http://127.0.0.1:1001"  # exchange as a venue
    assert "--sim" in gateway
    assert flag(gateway, "--print-events") == "false"
    assert flag(tap, "--port") == "1003"
    assert flag(tap, "--price-source") == "gateway"
    assert flag(tap, "--gateway-url") == "ws://127.0.0.1:1002/ws"
    assert flag(tap, "--gateway-symbol") == "BTC-USD"
    assert flag(tap, "--data-dir") == "/d/tap"
    assert flag(tap, "--dev-self-fund") == "true"
    assert flag(bots, "--exchange-url") == "http://127.0.0.1:1001"
    assert "BTCUSD=" in flag(bots, "--listings")


def test_live_mode_has_no_sim_flag_and_no_self_funding_and_no_bots_drops_them() -> None:
    specs = build_plan(PlatformConfig(sim=False, bots=False, redis_url="redis://r:6379/0"))
    assert [s.name for s in specs] == ["exchange", "gateway", "tap"]
    gateway, tap = list(specs[1].argv), list(specs[2].argv)
    assert "--sim" not in gateway
    assert "--dev-self-fund" not in tap
    assert flag(gateway, "--redis-url") == flag(tap, "--redis-url") == "redis://r:6379/0"


def test_wildcard_hosts_are_reached_on_loopback() -> None:
    assert connect_host("0.0.0.0") == "127.0.0.1"
    assert connect_host("::") == "[::1]"
    assert connect_host("10.0.0.5") == "10.0.0.5"
    assert urls(PlatformConfig(host="0.0.0.0")).tap == "http://127.0.0.1:8090"
    gateway = list(build_plan(PlatformConfig(host="0.0.0.0"))[1].argv)
    assert flag(gateway, "--host") == "0.0.0.0"


def test_summary_lists_every_url() -> None:
    text = summary(PlatformConfig(sim=True), {"exchange": 11, "gateway": 12, "tap": 13})
    for url in (
        "http://127.0.0.1:8080/console?symbol=BTCUSD",
        "http://127.0.0.1:8080/docs",
        "http://127.0.0.1:8090/",
        "ws://127.0.0.1:8085/ws",
        "http://127.0.0.1:8085/metrics",
        "http://127.0.0.1:8090/metrics",
        "http://127.0.0.1:8080/metrics",
    ):
        assert url in text
    assert "exchange 11, gateway 12, tap 13" in text
    assert "Ctrl-C" in text


def test_only_warnings_errors_and_unstructured_lines_reach_the_terminal() -> None:
    info = json.dumps({"event": "started", "level": "info", "timestamp": "t", "port": 1})
    warn = json.dumps({"event": "connect_failed", "level": "warning", "venue": "binance",
                       "error": "no route to host", "timestamp": "t"})  # fmt: skip
    assert render_line(info) is None
    assert render_line(info, verbose=True) == "info started port=1"
    assert render_line(warn) == 'warning connect_failed venue=binance error="no route to host"'
    assert render_line("Traceback (most recent call last):") == "Traceback (most recent call last):"
    assert render_line("INFO:     Started server process [1]") is None
    assert render_line("   ") is None


def test_child_lines_are_prefixed_with_the_child_name(capsys: pytest.CaptureFixture[str]) -> None:
    ChildLines()("gateway", json.dumps({"event": "e", "level": "error"}))
    assert capsys.readouterr().out == "gateway  | error e\n"


def test_up_refuses_equal_ports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["up", "--exchange-port", "9000", "--tap-port", "9000"]) == 2
    assert "distinct" in capsys.readouterr().err


def test_up_rejects_a_bad_setting_before_starting_anything(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["up", "--tap-price-venue", "nasdaq"]) == 2
    assert "tap_price_venue" in capsys.readouterr().err


# -- the venue watch (pure: readings with explicit times) ------------------------------------


def test_a_venue_without_live_books_is_reported_once_and_its_recovery_too() -> None:
    monitor = VenueMonitor(lambda _: None, tap_venue="coinbase", grace=15.0)
    down = {"coinbase": {"BTC-USD": "SYNCING"}, "tradehall": {"BTC-USD": "LIVE"}}
    assert monitor.observe(down, 0.0) == []
    assert monitor.observe(down, 14.0) == []
    [message] = monitor.observe(down, 15.0)
    assert "no market data from coinbase for 15 s (BTC-USD SYNCING)" in message
    assert "--sim" in message and "breaker" in message
    assert monitor.observe(down, 60.0) == []  # once per outage
    up = {"coinbase": {"BTC-USD": "LIVE"}, "tradehall": {"BTC-USD": "LIVE"}}
    assert monitor.observe(up, 61.0) == ["gateway: coinbase is live again"]
    assert monitor.observe(up, 62.0) == []
    assert monitor.observe(down, 70.0) == []  # a new outage starts its own grace period
    assert len(monitor.observe(down, 85.0)) == 1


def test_a_short_gap_is_not_reported_and_other_venues_do_not_mention_the_tap() -> None:
    monitor = VenueMonitor(lambda _: None, tap_venue="coinbase", sim=True, grace=10.0)
    assert monitor.observe({"kraken": {"BTC-USD": "RESYNCING"}}, 0.0) == []
    assert monitor.observe({"kraken": {"BTC-USD": "LIVE"}}, 5.0) == []
    assert monitor.observe({"kraken": {"BTC-USD": "SYNCING"}}, 6.0) == []
    [message] = monitor.observe({"kraken": {"BTC-USD": "SYNCING"}}, 16.0)
    assert "kraken" in message and "breaker" not in message and "--sim" not in message


def test_up_refuses_ports_in_use_before_starting_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    free = [str(p) for p in free_ports(2)]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = main(["up", "--exchange-port", str(port), "--gateway-port", free[0],
                     "--tap-port", free[1], "--data-dir", str(tmp_path)])  # fmt: skip
    assert code == 1
    assert f"port {port} is already in use on 127.0.0.1" in capsys.readouterr().err
    assert not (tmp_path / "logs").exists()  # nothing was started
