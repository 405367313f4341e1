"""Recipient phone numbers: what the gateway accepts as a destination, and the one form it stores.

This module owns validation and normalisation of recipients for every interface (HTTP, socket, MAS
tables, CLI). Mainland China mobile numbers are stored as their bare 11 digits, whatever prefix they came
with (+86, 86, 0086), because that is the form the carrier's SMSC and the OA systems expect and the form
replies arrive from; every other number must be E.164 and is stored as ``+`` and its digits. Typing noise
(spaces, dashes, parentheses, full-width characters from Chinese input methods) is removed first, so the
same number always normalises to the same string and duplicates can be dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["InvalidRecipient", "normalize", "validate_all"]

# Full-width forms come from Chinese input methods, which OA users copy numbers out of; map them to ASCII.
_FULL_WIDTH = str.maketrans("０１２３４５６７８９＋（）－", "0123456789+()-")
_NOISE = re.compile(r"[\s\-()\u2010-\u2015]+")  # whitespace (incl. U+3000), ASCII and Unicode dashes, ()
_DIGITS = re.compile(r"[0-9]+")
_MAINLAND_MOBILE = re.compile(r"1[3-9][0-9]{9}")

_NOT_A_NUMBER = "not a mainland mobile number (11 digits starting 13–19) nor E.164 (+ and 8–15 digits)"


class InvalidRecipient(ValueError):
    """A recipient that cannot be used.

    ``index`` is the position in the list given to :func:`validate_all`, or -1 when the error is not tied
    to one entry (a single :func:`normalize` call, or an empty list). ``value`` is the input as given.
    """

    def __init__(self, index: int, value: str, reason: str) -> None:
        self.index = index
        self.value = value
        self.reason = reason
        if index >= 0:
            message = f"recipient {index} ({value!r}): {reason}"
        elif value:
            message = f"recipient {value!r}: {reason}"
        else:
            message = reason
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        # Keep all three attributes across pickling (the default would pass only the message).
        return (type(self), (self.index, self.value, self.reason))


def normalize(number: str) -> str:
    """Normalise one number: bare 11 digits for a mainland mobile, ``+<digits>`` for E.164 otherwise.

    Raises :class:`InvalidRecipient` (index -1) with an English reason for anything else.
    """
    cleaned = _NOISE.sub("", number.translate(_FULL_WIDTH))
    if not cleaned:
        raise InvalidRecipient(-1, number, "empty")

    international = True
    if cleaned.startswith("+"):
        digits = cleaned[1:]
    elif cleaned.startswith("00"):
        digits = cleaned[2:]
    else:
        digits = cleaned
        international = False
    if not _DIGITS.fullmatch(digits):
        raise InvalidRecipient(
            -1, number, "may contain only digits, spaces, dashes, parentheses and a leading + or 00"
        )

    # 86 is China's country code; without + or 00 it is still the common way OA data writes it.
    if digits.startswith("86") and _MAINLAND_MOBILE.fullmatch(digits[2:]):
        return digits[2:]
    if not international:
        if _MAINLAND_MOBILE.fullmatch(digits):
            return digits
        raise InvalidRecipient(-1, number, _NOT_A_NUMBER)

    if digits.startswith("0"):
        raise InvalidRecipient(-1, number, "E.164 country codes do not start with 0")
    if not 8 <= len(digits) <= 15:
        reason = f"E.164 numbers have 8–15 digits after the +; this has {len(digits)}"
        raise InvalidRecipient(-1, number, reason)
    return "+" + digits


def validate_all(numbers: Sequence[str]) -> list[str]:
    """Normalise every recipient, dropping later duplicates (after normalisation) and keeping order.

    Raises :class:`InvalidRecipient` for the first bad entry, with its index, or with index -1 and reason
    "no recipients" for an empty list.
    """
    if isinstance(numbers, str):
        # A str is a Sequence[str]; iterating it would validate single characters.
        raise TypeError("validate_all takes a sequence of numbers, not one string")
    if not numbers:
        raise InvalidRecipient(-1, "", "no recipients")
    seen: dict[str, None] = {}
    for index, number in enumerate(numbers):
        try:
            normalised = normalize(number)
        except InvalidRecipient as exc:
            raise InvalidRecipient(index, number, exc.reason) from None
        seen.setdefault(normalised, None)
    return list(seen)
