"""The reply grammar of meeting notices: what a staff member's SMS answer means. Pure functions.

A reply is normalised first — full-width letters, digits and punctuation to ASCII (NFKC), case folded,
spaces collapsed — then read as: an optional meeting code anywhere (``#42``), then a leading word from
one of the vocabularies (longest first, so 不参加 is never read as 参加, and 12 is never read as 1),
then whatever follows, which is the reason of a leave request and a note otherwise. Anything that
starts with no known word is a comment. The vocabularies are configurable; the defaults are Chinese and
English.
"""

from __future__ import annotations

import dataclasses
import enum
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["DEFAULT_WORDS", "Grammar", "Intent", "Kind", "normalise"]


class Kind(enum.StrEnum):
    ATTEND = "attend"
    DECLINE = "decline"
    LEAVE = "leave"  # 请假, with a reason
    CHECKIN = "checkin"
    COMMENT = "comment"  # anything else: kept, answered with the help text


DEFAULT_WORDS: Mapping[Kind, tuple[str, ...]] = {
    Kind.ATTEND: ("1", "参加", "参会", "出席", "是", "确认", "Y", "YES", "OK"),
    Kind.DECLINE: ("2", "不参加", "不参会", "不出席", "否", "N", "NO"),
    Kind.LEAVE: ("3", "请假"),
    Kind.CHECKIN: ("签到", "QD"),
}

_SPACES = re.compile(r"\s+")
_CODE = re.compile(r"#\s*(\d{1,9})")
# What may separate the leading word from a reason: spaces and the punctuation people type there.
_SEPARATORS = " :;,.-_/|+、，。：；！!？?()[]【】（）"


@dataclasses.dataclass(frozen=True, slots=True)
class Intent:
    kind: Kind
    text: str = ""  # the reason of a leave, the note after another answer, or the whole comment
    meeting_code: int | None = None  # "#42" in the reply


def normalise(text: str) -> str:
    """Full width to ASCII, ideographic spaces to plain ones, runs of space to one, trimmed, upper case."""
    t = unicodedata.normalize("NFKC", text)
    return _SPACES.sub(" ", t).strip().upper()


class Grammar:
    """Reads replies with configurable vocabularies (each a list of words, matched at the start)."""

    def __init__(self, words: Mapping[Kind, Iterable[str]] | None = None) -> None:
        vocab = DEFAULT_WORDS if words is None else words
        pairs: list[tuple[str, Kind]] = []
        seen: dict[str, Kind] = {}
        for kind, ws in vocab.items():
            if kind is Kind.COMMENT:
                continue
            for w in ws:
                n = normalise(w)
                if not n:
                    continue
                if n in seen and seen[n] is not kind:
                    raise ValueError(f"the reply word {w!r} is given for both {seen[n]} and {kind}")
                seen[n] = kind
                pairs.append((n, kind))
        # Longest first: 不参加 before 参加 … and before 不, if someone adds it.
        self._words = sorted(set(pairs), key=lambda p: -len(p[0]))

    def parse(self, text: str, *, checkin_codes: Sequence[str] = ()) -> Intent:
        """What ``text`` means. ``checkin_codes``: the codes of the meetings it may answer; a reply that
        is exactly one of them (or 签到/QD followed by it) checks in."""
        t = normalise(text)
        code: int | None = None
        m = _CODE.search(t)
        if m:
            code = int(m.group(1))
            t = _SPACES.sub(" ", t[: m.start()] + " " + t[m.end() :]).strip(_SEPARATORS)
        for cc in checkin_codes:
            c = normalise(cc)
            if c and t == c:
                return Intent(Kind.CHECKIN, "", code)
        for word, kind in self._words:
            if not t.startswith(word):
                continue
            rest = t[len(word) :]
            # An ASCII word must end at a word boundary: "12" is not "1", "NOW" is not "NO".
            if word[-1].isascii() and word[-1].isalnum() and rest[:1].isascii() and rest[:1].isalnum():
                continue
            rest = rest.strip(_SEPARATORS)
            return Intent(kind, _original_case(text, rest), code)
        return Intent(Kind.COMMENT, text.strip(), code)


def _original_case(original: str, rest_upper: str) -> str:
    """The reason as the sender wrote it (normalised width and spaces, but not upper-cased)."""
    if not rest_upper:
        return ""
    plain = _SPACES.sub(" ", unicodedata.normalize("NFKC", original)).strip()
    at = plain.upper().rfind(rest_upper)
    return plain[at : at + len(rest_upper)] if at >= 0 else rest_upper
