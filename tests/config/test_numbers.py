"""The one rule for numbers a person types (config/numbers.py)."""

import math

import pytest

from comfyrig.config.numbers import Bounds, check_number
from comfyrig.errors import ConfigError

SECONDS = Bounds(minimum=0, maximum=86_400, unit="seconds")


@pytest.mark.parametrize(
    ("value", "bounds", "needle"),
    [
        (math.nan, SECONDS, "not a finite number"),
        (math.inf, SECONDS, "not a finite number"),
        (-math.inf, SECONDS, "not a finite number"),
        (-1.0, SECONDS, "too small"),
        (1e9, SECONDS, "too large"),
        (0.0, Bounds(above=0), "more than 0"),
        (0, Bounds(minimum=1), "at least 1"),
    ],
)
def test_refused(value: float, bounds: Bounds, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_number(value, "--flag", bounds)
    assert info.value.message.startswith("--flag ") and needle in info.value.message


@pytest.mark.parametrize(("value", "bounds"), [(0.0, SECONDS), (86_400, SECONDS), (0.5, Bounds(above=0)), (1, Bounds(minimum=1))])
def test_accepted(value: float, bounds: Bounds) -> None:
    assert check_number(value, "--flag", bounds) == value


def test_message_has_plain_numbers() -> None:
    with pytest.raises(ConfigError, match=r"at most 1000000[.:]") as info:
        check_number(2e6, "--ram", Bounds(minimum=0, maximum=1_000_000, unit="GiB"))
    assert "2000000 is too large" in info.value.message
