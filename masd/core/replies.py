"""Reply routing: deciding whom a reply (上行短信) belongs to. Pure functions, no I/O.

One mechanism for every interface. A reply goes

  (a) to the app that owns the extension in its destination address (service number + app extension
      + the app's own sub-extension, e.g. an OA's SRC_ID or a meeting attendee's code), else
  (b) to the app named by a keyword rule from the configuration (the reply's first word), else
  (c) to the app of the most recent delivery to that sender within the configured window, else
  nobody: it is kept as unmatched and listed by ``masd replies --unmatched``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping

from masd.core import reading
from masd.core import recipients as rcpt

__all__ = [
    "EXTENSION",
    "KEYWORD",
    "NONE",
    "RECENT",
    "Route",
    "by_extension",
    "by_keyword",
    "extension_of",
    "normalise_sender",
    "normalise_text",
]

EXTENSION = "extension"
KEYWORD = "keyword"
RECENT = "recent"
NONE = "none"

_FIRST_WORD = re.compile(r"[^\s,.;:!?，。；：！？、]+")


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    app_id: int | None
    matched_by: str  # extension | keyword | recent | none
    extension: str = ""  # the part of the destination after the owning app's extension


def normalise_text(text: str) -> str:
    """What a keyword is compared with: the reply as :func:`masd.core.reading.normalise` reads it —
    full width to ASCII, Traditional to Simplified (退訂 is 退订), emoji dropped, spaces collapsed —
    in upper case."""
    return reading.normalise(text).upper()


def normalise_sender(sender: str) -> str:
    """The sender as deliveries store recipients (+86 and 0086 dropped), or its digits if not valid."""
    try:
        return rcpt.normalize(sender)
    except ValueError:
        return "".join(ch for ch in sender if ch.isdigit()) or sender


def extension_of(destination: str, service_numbers: Iterable[str]) -> str:
    """What follows the longest service number the destination starts with; "" if none matches."""
    digits = "".join(ch for ch in destination if ch.isdigit())
    best = ""
    for sn in service_numbers:
        if sn and digits.startswith(sn) and len(sn) > len(best):
            best = sn
    return digits[len(best) :] if best else ""


def by_extension(extension: str, owners: Mapping[str, int]) -> Route | None:
    """(a): the app whose extension is the longest prefix of this one."""
    best: str | None = None
    for ext in owners:
        if extension.startswith(ext) and (best is None or len(ext) > len(best)):
            best = ext
    if best is None:
        return None
    return Route(owners[best], EXTENSION, extension[len(best) :])


def by_keyword(text: str, rules: Mapping[str, int], extension: str = "") -> Route | None:
    """(b): the app whose keyword is the reply's first word, or begins it (Chinese has no spaces:
    "会议1" begins with the keyword "会议"). Longer keywords win over their prefixes."""
    t = normalise_text(text)
    if not t:
        return None
    m = _FIRST_WORD.match(t)
    first = m.group(0) if m else t
    best: str | None = None
    for kw in rules:
        k = normalise_text(kw)
        if not k:
            continue
        hit = first == k or (not k.isascii() and first.startswith(k))
        if hit and (best is None or len(k) > len(normalise_text(best))):
            best = kw
    if best is None:
        return None
    return Route(rules[best], KEYWORD, extension)
