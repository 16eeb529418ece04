import pytest

from tradehall.core.timefmt import format_ns, parse_rfc3339_ns

BASE = 1_771_354_800 * 10**9  # 2026-02-17T19:00:00Z


def test_format_is_second_granular_utc() -> None:
    assert format_ns(BASE) == "2026-02-17T19:00:00Z"
    assert format_ns(BASE + 999_999_999) == "2026-02-17T19:00:00Z"
    assert format_ns(BASE + 10**9) == "2026-02-17T19:00:01Z"


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("2026-02-17T19:00:00Z", BASE),
        ("2026-02-17T19:00:00+00:00", BASE),
        ("2026-02-17T21:00:00+02:00", BASE),
        ("2026-02-17T19:00:00.5Z", BASE + 500_000_000),
        ("2026-02-17t19:00:00.123456789z", BASE + 123_456_789),
    ],
)
def test_parse_accepts_rfc3339(text: str, ns: int) -> None:
    assert parse_rfc3339_ns(text) == ns


@pytest.mark.parametrize(
    "text",
    [
        "2026-02-17",
        "2026-02-17T19:00:00",
        "2026-02-17 19:00:00Z",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "tomorrow",
        "2026-02-17T19:00:00+25:00",
        "",
    ],
)
def test_parse_refuses_malformed(text: str) -> None:
    with pytest.raises(ValueError, match=r".+"):
        parse_rfc3339_ns(text)
