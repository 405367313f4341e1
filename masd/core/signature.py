"""Carrier signatures (短信签名): the 【单位名】 a Chinese carrier requires in every text, in the
organisation's registered name, at the front or the back of the text.

Pure rules, no I/O, shared by the configuration check, the CLI, the Gateway (which counts a delivery's
segments with the signature in) and the dispatcher (which sends the same signed text):

- a text *carries* a signature when, after stripping whitespace, it starts or ends with a 【…】 whose
  name is :data:`MIN_NAME` to :data:`MAX_NAME` printable characters without brackets — what a carrier
  reads as the signature. A 【 inside the text (【会议】 in mid-sentence), ASCII brackets, or a 【…】
  followed by anything but whitespace (``开会【市政府】。``) is not one;
- :func:`signed` adds a signature unless the text carries one, whichever it is: a second 【…】 makes
  carriers refuse the text (one signature per text) or show two names, and the one the text has was
  chosen by whoever wrote it (an app sending as its own department, the meeting module's signature),
  which masd cannot know to be wrong. So signing is idempotent: ``signed(signed(t)) == signed(t)``.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "MAX_NAME",
    "MIN_NAME",
    "Position",
    "carries_signature",
    "check_signature",
    "signed",
]

OPEN, CLOSE = "【", "】"
MIN_NAME = 2  # the cloud platforms' rule (2 to 12); carriers' registered names are rarely shorter
MAX_NAME = 16  # a full government name (【某某市人民政府办公室】) fits with room to spare

Position = Literal["front", "back"]


def _is_name(inner: str) -> bool:
    return (
        MIN_NAME <= len(inner) <= MAX_NAME
        and OPEN not in inner
        and CLOSE not in inner
        and inner.isprintable()
        and inner.strip() == inner
    )


def carries_signature(text: str) -> bool:
    """Whether ``text`` starts or ends (whitespace aside) with a 【name】 a carrier reads as a signature."""
    t = text.strip()
    if t.startswith(OPEN):
        end = t.find(CLOSE, 1)
        if end > 0 and _is_name(t[1:end]):
            return True
    if t.endswith(CLOSE):
        start = t.rfind(OPEN, 0, len(t) - 1)
        if start >= 0 and _is_name(t[start + 1 : -1]):
            return True
    return False


def signed(text: str, signature: str, position: Position = "front") -> str:
    """``text`` with ``signature`` (a value :func:`check_signature` accepts; "" for none) at ``position``,
    unless the text carries a signature already — any signature, so that a text never has two."""
    if not signature or carries_signature(text):
        return text
    return signature + text if position == "front" else text + signature


def check_signature(value: str) -> str:
    """An operator's signature (configuration, ``masd apps --signature``) → the value to store, stripped;
    raise ValueError saying what is expected."""
    v = value.strip()
    if not (v.startswith(OPEN) and v.endswith(CLOSE) and len(v) >= 2 and _is_name(v[1:-1])):
        raise ValueError(
            f"{value!r} is not a signature: write the organisation's registered name in full-width "
            f"brackets, {MIN_NAME} to {MAX_NAME} characters on one line, e.g. 【市政府办公室】"
        )
    return v
