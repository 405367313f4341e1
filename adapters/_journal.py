"""JSON-lines journals of the simulated carriers (``sim``, ``voice_sim``): reading one back line by line,
and rewriting one atomically when it is compacted. Also the option checks both simulators share."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["invalid_option", "number", "read_records", "replace_atomically"]


def read_records(
    path: str | os.PathLike[str], apply: Callable[[dict[str, Any]], None], what: str
) -> tuple[bool, int]:
    """Feed each record of the journal at ``path`` to ``apply``. A partial last line (a write cut short
    by a crash) is ignored; a malformed complete line raises ValueError naming the file and line, since
    the driver never writes one. Returns (whether the last line was torn, the bytes of whole lines)."""
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                return True, offset
            offset += len(raw)
            if not raw.strip():
                continue
            try:
                apply(json.loads(raw))
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                raise ValueError(f"{os.fspath(path)}:{lineno}: not a {what} line: {exc}") from exc
    return False, offset


def replace_atomically(path: str, lines: Iterable[bytes]) -> int:
    """Write ``lines`` to a side file, fsync it, rename it over ``path`` and fsync the directory, so a
    crash leaves either the old journal or the new one. Returns the new file's size."""
    tmp = path + ".compact"
    with open(tmp, "wb") as f:
        for line in lines:
            f.write(line)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return os.path.getsize(path)


def invalid_option(driver: str, channel: str, option: str, value: object, allowed: str) -> ValueError:
    return ValueError(f"{driver} channel {channel!r}: option {option}={value!r} is invalid: {allowed}")


def number(value: object) -> float | None:
    """The value as a finite float, or None if it is not a number."""
    # bool is an int subclass; `true` typed into the wrong option must not read as 1.
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None
