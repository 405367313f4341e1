"""The reply grammar of meeting notices: what a staff member's SMS answer means. Pure functions.

A reply is read by the core's reader (:mod:`masd.core.reading`) against the meeting vocabulary —
attend, decline, leave (请假, whose other words are the reason) and check-in — and comes out as an
:class:`Intent`: the kind, whether the reading is *sure*, the reason of a leave or the note after
another answer, and a meeting code (``#42``) found anywhere. Only a sure reading is an answer; an
unsure one (a question, a contradiction, a negation that does not make a refusal, words the reader does
not know) is to be asked back. ``参加不了``, ``确认不参加`` and ``不能参加`` decline; ``是否需要带材料？``
answers nothing; ``參加`` is ``参加``; ``张三参加`` attends. The vocabularies are configurable per
kind; the defaults are Chinese and English.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping, Sequence

from masd.core import reading
from masd.core.reading import normalise

__all__ = ["DEFAULT_WORDS", "Grammar", "Intent", "Kind", "normalise"]


class Kind(enum.StrEnum):
    ATTEND = "attend"
    DECLINE = "decline"
    LEAVE = "leave"  # 请假, with a reason
    CHECKIN = "checkin"
    COMMENT = "comment"  # anything else: kept, answered with the help text


# Refusals such as 不能参加, 去不了, 参加不了 and can't come, and attending such as 会来 or 准时到,
# need no words of their own: the reader makes them from the attend words and its own verbs.
DEFAULT_WORDS: Mapping[Kind, tuple[str, ...]] = {
    Kind.ATTEND: (
        "1",
        "参加",
        "参会",
        "出席",
        "到会",
        "与会",
        "到场",
        "是",
        "确认",
        "Y",
        "YES",
        "attend",
        "attending",
        "coming",
        "will be there",
    ),
    Kind.DECLINE: ("2", "不参加", "不参会", "不出席", "否", "N", "NO", "decline"),
    Kind.LEAVE: ("3", "请假", "请个假", "请病假", "请事假", "病假", "事假", "休假", "请假原因", "请假事由"),
    Kind.CHECKIN: ("签到", "QD", "checked in"),
}


@dataclasses.dataclass(frozen=True, slots=True)
class Intent:
    kind: Kind
    text: str = ""  # the reason of a leave, the note after another answer, or the whole comment
    meeting_code: int | None = None  # "#42" in the reply
    # Whether the reply may be recorded as this answer. Unsure: ``kind`` is the best guess (COMMENT if
    # none) and ``text`` the whole reply; ask back, record nothing.
    sure: bool = True


def words_of(configured: Mapping[Kind, Iterable[str]] | None) -> dict[Kind, tuple[str, ...]]:
    """The vocabulary in use: the configured words of a kind replace that kind's defaults."""
    words = {k: tuple(v) for k, v in DEFAULT_WORDS.items()}
    for kind, ws in (configured or {}).items():
        if kind is not Kind.COMMENT:
            words[Kind(kind)] = tuple(ws)
    return words


class Grammar:
    """Reads replies with configurable vocabularies. Refuses (ValueError, naming the word) a word that
    two kinds share once normalised — ``參加`` for decline while ``参加`` attends — or that is nothing
    once normalised."""

    def __init__(self, words: Mapping[Kind, Iterable[str]] | None = None) -> None:
        self.words = words_of(words)
        self._reader = reading.Reader(
            self.words,
            yes=Kind.ATTEND,
            no=Kind.DECLINE,
            free=(Kind.LEAVE,),
            absorbs={Kind.LEAVE: (Kind.DECLINE,)},
        )

    def read(self, text: str, *, checkin_codes: Sequence[str | None] = ()) -> Intent:
        """What ``text`` means, sure or not. ``checkin_codes``: the check-in codes of the meetings it
        may answer; a reply that is one of them (or 签到 and one of them) checks in, and a number
        beside 签到 that is none of them makes it unsure. Never raises."""
        r = self._reader.read(text, codes={c: Kind.CHECKIN for c in checkin_codes if c})
        kind = r.meaning if r.meaning is not None else Kind.COMMENT
        return Intent(kind, r.text, r.code, r.sure and kind is not Kind.COMMENT)

    def parse(self, text: str, *, checkin_codes: Sequence[str | None] = ()) -> Intent:
        """:meth:`read`, with an unsure reading given as a comment: what a caller that records every
        answer it is given may record."""
        intent = self.read(text, checkin_codes=checkin_codes)
        if intent.sure:
            return intent
        return Intent(Kind.COMMENT, intent.text, intent.meeting_code, False)
