"""Specification of masd.core.reply_parts: a long reply's text from its parts' bytes, gaps marked."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from masd.core import gsm7
from masd.core.reply_parts import MISSING, decode, gaps, join


def test_decode_by_codec_name() -> None:
    assert decode("gsm7", gsm7.encode_unpacked("Hi @ 3€")) == "Hi @ 3€"
    assert decode("ucs2", "会议 👍".encode("utf-16-be")) == "会议 👍"
    assert decode("gb18030", "你好".encode("gbk")) == "你好"
    assert decode("latin-1", b"caf\xe9") == "café"


def test_septet_data_with_a_high_octet_reads_as_latin1() -> None:
    assert decode("gsm7", b"caf\xe9") == "café"


def test_ucs2_with_an_odd_last_octet_drops_it() -> None:
    assert decode("ucs2", "好".encode("utf-16-be") + b"\x00") == "好"


def test_an_unknown_codec_reads_as_latin1() -> None:
    assert decode("no-such-codec", b"\x00\xff") == "\x00\xff"


@given(st.sampled_from(["gsm7", "ucs2", "latin-1", "gb18030", "shift_jis", "bogus"]), st.binary(max_size=80))
def test_decode_never_raises(codec: str, body: bytes) -> None:
    assert isinstance(decode(codec, body), str)


def test_join_reads_the_joined_bytes_not_each_part() -> None:
    body = "ok 👍".encode("utf-16-be")
    cut = len(body) - 2  # between the high and the low surrogate
    assert join(2, {2: ("ucs2", body[cut:]), 1: ("ucs2", body[:cut])}) == "ok 👍"


def test_each_gap_is_marked_once() -> None:
    parts = {1: ("gsm7", b"one-"), 3: ("gsm7", b"three-")}
    assert join(4, parts) == f"one-{MISSING}three-{MISSING}"
    assert gaps(4, parts) == "incomplete: parts 1,3 of 4 (missing 2,4)"


def test_consecutive_missing_parts_share_one_marker() -> None:
    assert join(6, {2: ("gsm7", b"b"), 6: ("gsm7", b"f")}) == f"{MISSING}b{MISSING}f"
    assert gaps(6, [2, 6]) == "incomplete: parts 2,6 of 6 (missing 1,3,4,5)"


def test_runs_of_different_codecs_decode_apart() -> None:
    assert (
        join(2, {1: ("gsm7", gsm7.encode_unpacked("Hi ")), 2: ("ucs2", "世界".encode("utf-16-be"))})
        == "Hi 世界"
    )
