"""JSON-lines journals of the simulated carriers (``sim``, ``voice_sim``): reading one back line by line,
and rewriting one atomically when it is compacted. Also the option readers both simulators' options
models share (a delay range, a weighted table)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["number", "read_records", "replace_atomically", "seconds_range", "weights"]


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


def number(value: object) -> float | None:
    """The value as a finite float, or None if it is not a number."""
    # bool is an int subclass; `true` typed into the wrong option must not read as 1.
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def seconds_range(value: object, allowed: str) -> tuple[float, float]:
    """Seconds given as one number or as ``[min, max]``, as (min, max); ValueError(``allowed``) else."""
    fixed = number(value)
    if fixed is not None and fixed >= 0:
        return fixed, fixed
    if isinstance(value, list | tuple) and len(value) == 2:
        lo, hi = number(value[0]), number(value[1])
        if lo is not None and hi is not None and 0 <= lo <= hi:
            return lo, hi
    raise ValueError(allowed)


def weights(value: object, allowed: str, key_of: Callable[[object], str]) -> dict[str, float]:
    """A table of outcome -> weight >= 0 with some weight > 0, as {key_of(outcome): weight} without the
    zero weights. ``key_of`` raises ValueError naming a key it does not know; ValueError(``allowed``)
    for anything else wrong."""
    if not isinstance(value, Mapping) or not value:
        raise ValueError(allowed)
    table: dict[str, float] = {}
    for key, raw_weight in value.items():
        outcome = key_of(key)
        weight = number(raw_weight)
        if weight is None or weight < 0:
            raise ValueError(f"weight of {key!r} is {raw_weight!r}; {allowed}")
        if weight:
            table[outcome] = table.get(outcome, 0.0) + weight
    if not table:
        raise ValueError(allowed)
    return table
