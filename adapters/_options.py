"""The options the drivers for the Chinese carriers' gateways (``cmpp``, ``sgip``, ``smgp``) share, with the
words an operator reads when a value does not fit; each driver's model adds its protocol's own."""

from __future__ import annotations

from .base import DriverOptions, InvalidOption, option

__all__ = ["ASCII", "DIGITS", "SECONDS", "CarrierOptions", "ascii_text"]

SECONDS = "a number of seconds greater than 0"
ASCII = r"^[\x20-\x7e]*$"
DIGITS = r"^[0-9]*$"


def ascii_text(max_len: int) -> str:
    return f"ASCII text of at most {max_len} characters"


class CarrierOptions(DriverOptions):
    """Where the gateway is, how many connections and how many submits on each, how long to wait and
    retry, the text rules' GBK switch, how long a long reply waits for its parts, and the submit rate.
    A model's validator calls :meth:`require` and :meth:`check_reconnect`."""

    host: str = option("", ascii_text(255), max_length=255, pattern=ASCII)
    connections: int = option(1, "an integer from 1 to 16", ge=1, le=16)
    window: int = option(16, "an integer from 1 to 1024", ge=1, le=1024)
    response_timeout: float = option(60.0, SECONDS, gt=0)
    resends: int = option(3, "an integer from 0 to 10", ge=0, le=10)
    reconnect_min: float = option(1.0, SECONDS, gt=0)
    reconnect_max: float = option(60.0, SECONDS, gt=0)
    allow_gbk: bool = option(False, "true or false")
    mo_timeout: float = option(60.0, SECONDS, gt=0)
    max_rate: float | None = option(None, "submits per second greater than 0, or unset", gt=0)

    @staticmethod
    def require(*fields: tuple[str, str]) -> None:
        """InvalidOption for the first of ``fields`` (name, value) left empty."""
        for key, value in fields:
            if not value:
                raise InvalidOption(key, value, "required; expected a non-empty string")

    def check_reconnect(self) -> None:
        if self.reconnect_max < self.reconnect_min:
            raise InvalidOption(
                "reconnect_max", self.reconnect_max, f"must be >= reconnect_min ({self.reconnect_min:g})"
            )
