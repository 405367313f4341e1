"""The options the drivers for the Chinese carriers' gateways (``cmpp``, ``sgip``, ``smgp``) share: each
one's default, constraints and the words an operator reads when a value does not fit, declared once and
named in each driver's model (``window: int = WINDOW``), so that every model keeps its own order of
options; and the checks their validators share."""

from __future__ import annotations

from .base import InvalidOption, option

__all__ = [
    "ACTIVE_TEST_INTERVAL",
    "ALLOW_GBK",
    "ASCII",
    "CONNECTIONS",
    "DIGITS",
    "HOST",
    "MAX_RATE",
    "MO_TIMEOUT",
    "RECONNECT_MAX",
    "RECONNECT_MIN",
    "RESENDS",
    "RESPONSE_TIMEOUT",
    "SECONDS",
    "WINDOW",
    "ascii_text",
    "check_reconnect",
    "require",
]

SECONDS = "a number of seconds greater than 0"
ASCII = r"^[\x20-\x7e]*$"
DIGITS = r"^[0-9]*$"


def ascii_text(max_len: int) -> str:
    return f"ASCII text of at most {max_len} characters"


HOST = option("", ascii_text(255), max_length=255, pattern=ASCII)
CONNECTIONS = option(1, "an integer from 1 to 16", ge=1, le=16)
WINDOW = option(16, "an integer from 1 to 1024", ge=1, le=1024)
RESPONSE_TIMEOUT = option(60.0, SECONDS, gt=0)
RESENDS = option(3, "an integer from 0 to 10", ge=0, le=10)
ACTIVE_TEST_INTERVAL = option(180.0, SECONDS, gt=0)
RECONNECT_MIN = option(1.0, SECONDS, gt=0)
RECONNECT_MAX = option(60.0, SECONDS, gt=0)
ALLOW_GBK = option(False, "true or false")
MO_TIMEOUT = option(60.0, SECONDS, gt=0)
MAX_RATE = option(None, "submits per second greater than 0, or unset", gt=0)


def require(*fields: tuple[str, str]) -> None:
    """InvalidOption for the first of ``fields`` (name, value) left empty."""
    for key, value in fields:
        if not value:
            raise InvalidOption(key, value, "required; expected a non-empty string")


def check_reconnect(reconnect_min: float, reconnect_max: float) -> None:
    if reconnect_max < reconnect_min:
        raise InvalidOption("reconnect_max", reconnect_max, f"must be >= reconnect_min ({reconnect_min:g})")
