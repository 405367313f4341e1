"""Reading untrusted JSON: the one reader the HTTP API (the fast path and the full routes) and the
socket interface share.

Strict UTF-8, no NaN or Infinity, no lone surrogates, no whole number beyond 64 bits, at most
``MAX_DEPTH`` levels of nesting. Whatever it refuses it names, so an interface answers with an error
instead of failing later on a value that it can neither store nor write back as JSON.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_DEPTH", "UnusableJson", "load_json"]

MAX_DEPTH = 32  # levels of arrays and objects; masd's deepest body (a batch) has four
_MAX_INT = 2**63 - 1  # the widest integer column; nothing masd takes is larger
_SURROGATE = re.compile("[\ud800-\udfff]")


class UnusableJson(ValueError):
    """JSON that masd will not take. ``reason`` is a sentence for people; ``field`` the path of the
    value at fault (``text``, ``messages[2].text``) when one value is, with ``index`` the position
    when that value sits in a list (``to`` and ``index`` 1 for the second recipient); ``path`` the
    same as keys and positions."""

    def __init__(self, reason: str, path: tuple[str | int, ...] = ()) -> None:
        self.reason = reason
        self.path = path
        self.field: str | None = None
        self.index: int | None = None
        if path:
            if isinstance(path[-1], int):
                self.index = path[-1]
                path = path[:-1]
            self.field = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
        super().__init__(f"{self.field}: {reason}" if self.field else reason)


def load_json(data: bytes, what: str = "body") -> Any:
    """``data`` as JSON, or :class:`UnusableJson` saying why not; ``what`` names it in the reason
    ("the body is not valid UTF-8 …"). A leading UTF-8 byte order mark is ignored."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UnusableJson(
            f"the {what} is not valid UTF-8 (byte 0x{data[e.start]:02x} at position {e.start})"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise UnusableJson(f"the {what} is not valid JSON ({e.msg} at character {e.pos})") from None
    except RecursionError:
        raise UnusableJson(f"the {what} nests arrays and objects more than {MAX_DEPTH} deep") from None
    except ValueError:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise UnusableJson(f"the {what} holds a number with too many digits") from None
    # A lone surrogate can only come from a \u escape: strict UTF-8 decoding lets none through.
    _check(doc, what, surrogates="\\u" in text)
    return doc


def _check(doc: Any, what: str, *, surrogates: bool) -> None:
    """Raise :class:`UnusableJson` for the first value, in document order, that masd cannot take."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(doc, ())]
    while stack:
        value, path = stack.pop()
        kind = type(value)
        if kind is dict or kind is list:
            if len(path) >= MAX_DEPTH:
                raise UnusableJson(f"the {what} nests arrays and objects more than {MAX_DEPTH} deep")
            if kind is list:
                stack.extend((value[i], (*path, i)) for i in range(len(value) - 1, -1, -1))
                continue
            items = list(value.items())
            if surrogates:
                for key, _ in items:
                    if _SURROGATE.search(key):
                        raise _fault(f"has a field name that {_lone(key)}", path, what)
            stack.extend((v, (*path, k)) for k, v in reversed(items))
        elif kind is str:
            if surrogates and _SURROGATE.search(value):
                raise _fault(_lone(value), path, what)
        elif kind is float:
            if not math.isfinite(value):
                why = "is not a finite number (NaN, Infinity and numbers beyond about 1.8e308 are not JSON)"
                raise _fault(why, path, what)
        elif kind is int and not -_MAX_INT - 1 <= value <= _MAX_INT:
            why = f"is out of range; masd takes whole numbers from {-_MAX_INT - 1} to {_MAX_INT}"
            raise _fault(why, path, what)


def _fault(reason: str, path: tuple[str | int, ...], what: str) -> UnusableJson:
    # A value with a field name is that field's fault; one outside any object is the whole body's.
    if any(isinstance(p, str) for p in path):
        return UnusableJson(reason, path)
    return UnusableJson(f"the {what} {reason}" if not path else f"a value in the {what} {reason}")


def _lone(text: str) -> str:
    found = _SURROGATE.search(text)
    assert found is not None
    return (
        f"contains \\u{ord(found.group()):04x}, half of a UTF-16 surrogate pair without its other half, "
        "which is not a character"
    )
