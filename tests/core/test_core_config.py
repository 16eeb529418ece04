import argparse

import pytest

from tradehall.core.config import (
    ConfigError,
    Setting,
    add_arguments,
    add_switches,
    parse_bool,
    parse_duration,
    parse_port,
    resolve,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("1s", 1.0), ("5m", 300.0), ("1m30s", 90.0), ("2h", 7200.0), ("0", 0.0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "5x", "m5", "1s 2s", "-1s", "1.5.5s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


SETTINGS = [
    Setting("port", "8080", parse_port, "port", aliases=("PORT",)),
    Setting("vwap_window", "5m", parse_duration, "window"),
    Setting("allow", "0", parse_bool, "flag"),
]


def test_precedence_flag_over_env_over_alias_over_default() -> None:
    assert resolve(SETTINGS, {}, {})["port"] == 8080
    assert resolve(SETTINGS, {}, {"PORT": "81"})["port"] == 81
    assert resolve(SETTINGS, {}, {"PORT": "81", "TRADEHALL_PORT": "82"})["port"] == 82
    assert resolve(SETTINGS, {"port": "83"}, {"TRADEHALL_PORT": "82"})["port"] == 83
    assert resolve(SETTINGS, {}, {"TRADEHALL_PORT": ""})["port"] == 8080  # empty -> default


def test_invalid_value_names_setting_source_and_value() -> None:
    with pytest.raises(ConfigError) as info:
        resolve(SETTINGS, {}, {"TRADEHALL_VWAP_WINDOW": "5 minutes"})
    message = str(info.value)
    assert "vwap_window" in message
    assert "TRADEHALL_VWAP_WINDOW" in message
    assert "'5 minutes'" in message


def test_flags_are_added_for_every_setting() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, SETTINGS)
    args = parser.parse_args(["--vwap-window", "1m", "--allow", "yes"])
    values = resolve(SETTINGS, args, {})
    assert values["vwap_window"] == 60.0
    assert values["allow"] is True


def test_switches_take_no_value_and_leave_the_environment_in_charge_when_absent() -> None:
    switches = [Setting("sim", "false", parse_bool, "simulate")]
    parser = argparse.ArgumentParser()
    add_switches(parser, switches)
    assert resolve(switches, parser.parse_args(["--sim"]), {})["sim"] is True
    absent = parser.parse_args([])
    assert resolve(switches, absent, {})["sim"] is False
    assert resolve(switches, absent, {"TRADEHALL_SIM": "1"})["sim"] is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--sim", "no"])
