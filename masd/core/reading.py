"""Reading replies as staff type them: the normalisation every reply goes through. Pure functions.

:func:`normalise` is what every reply and every configured word is compared as — the core's keyword
rules (TD, 退订) and the modules' answers alike: control characters and lone surrogates dropped, full
width to ASCII (NFKC), Traditional to Simplified Chinese (OpenCC), case folded, emoji and other
symbols turned into spaces, spaces collapsed. :func:`normalised` also keeps the reply as written, for
the words a reader hands back (a leave's reason) in the sender's case and script.
"""

from __future__ import annotations

import dataclasses
import functools
import unicodedata
from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

import opencc

__all__ = ["Normalised", "clean", "normalise", "normalised", "vocabulary"]

M = TypeVar("M", bound=Hashable)


# ----- normalisation ------------------------------------------------------------------------------


@functools.cache
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


def clean(text: str) -> str:
    """``text`` without what cannot be stored or shown: lone surrogates (invalid UTF-16 from a handset)
    and control characters other than tab and line breaks. Nothing else changes."""
    return "".join(ch for ch in text if not (unicodedata.category(ch) in ("Cs", "Cc") and ch not in "\t\n\r"))


@dataclasses.dataclass(frozen=True, slots=True)
class Normalised:
    """A reply normalised (``text``) and the same reply as written (``written``: width, symbols and
    spaces normalised, but case kept and, where OpenCC kept the length, the script too). ``index``
    maps each position of ``text`` to its position in ``written``."""

    text: str
    written: str
    index: tuple[int, ...]

    def as_written(self, start: int, end: int) -> str:
        """``text[start:end]`` as the sender wrote it."""
        if start >= end or start >= len(self.index):
            return ""
        return self.written[self.index[start] : self.index[end - 1] + 1]


def _visible(ch: str) -> str:
    """One character after NFKC: kept, a space (whitespace, emoji and other symbols), or dropped
    (format characters such as zero-width joiners, variation selectors, enclosing keycaps)."""
    cat = unicodedata.category(ch)
    if ch.isspace() or cat in ("Zs", "Zl", "Zp"):
        return " "
    if cat in ("Cc", "Cf", "Cs", "Me") or 0xFE00 <= ord(ch) <= 0xFE0F or 0xE0100 <= ord(ch) <= 0xE01EF:
        return ""
    if not ch.isascii() and cat in ("So", "Sk", "Sm", "Co", "Cn"):
        return " "
    return ch


# Typographic quotes typed by phones' keyboards, read as the ASCII ones (can’t is can't).
_QUOTES = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'}


def normalised(text: str) -> Normalised:
    """The reply normalised, remembering how it was written. Never raises."""
    t = unicodedata.normalize("NFKC", clean(text))
    written = " ".join("".join(_visible(ch) for ch in t).split())
    simplified = _t2s().convert(written) if written else ""
    if len(simplified) != len(written):  # OpenCC changed the length: the positions are the simplified ones
        written = simplified
    folded: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(simplified):
        f = _QUOTES.get(ch) or ch.casefold()
        folded.append(f)
        index.extend([i] * len(f))
    return Normalised("".join(folded), written, tuple(index))


def normalise(text: str) -> str:
    """What a reply or a configured word is compared as: ``ＴＤ``, ``td`` and ``TD`` alike, ``退訂`` as
    ``退订``, ``參加👍`` as ``参加``. Never raises."""
    return normalised(text).text


def vocabulary(words: Mapping[M, Iterable[str]]) -> dict[str, M]:
    """Each configured word normalised, with its meaning. Refuses, naming the word, one that two
    meanings share once normalised (``參加`` for one and ``参加`` for another) and one that is nothing
    once normalised (an emoji alone)."""
    seen: dict[str, tuple[M, str]] = {}
    for meaning, ws in words.items():
        for w in ws:
            n = normalise(w)
            if not n:
                raise ValueError(f"the reply word {w!r} ({meaning}) reads as nothing once normalised")
            if n in seen and seen[n][0] != meaning:
                other, as_given = seen[n]
                raise ValueError(
                    f"the reply word {w!r} is given for both {other} and {meaning}"
                    + (f" (as {as_given!r})" if as_given != w else "")
                    + f"; both read as {n!r}"
                )
            seen.setdefault(n, (meaning, w))
    return {n: m for n, (m, _) in seen.items()}
