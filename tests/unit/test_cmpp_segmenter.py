"""The ``cmpp`` channel's Segmenter: what the core counts at accept is what it sends, ASCII/UCS-2/GBK part
sizes, UDH and Pk fields on each segment, the splitter's TooManySegments, and refused concatenations."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from masd.core.split import TooManySegments
from masd_adapters.cmpp import text
from masd_adapters.cmpp.client import CmppChannel
from masd_adapters.cmpp.constants import MSG_FMT_ASCII, MSG_FMT_GBK, MSG_FMT_UCS2
from masd_adapters.cmpp.segments import CmppSegmenter

HAN = "会"

# Any text without lone surrogates: ASCII, Chinese, symbols GBK lacks, characters beyond the BMP.
texts = st.text(
    st.one_of(
        st.characters(max_codepoint=0x7F, exclude_categories=("Cs",)),
        st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
        st.characters(exclude_categories=("Cs",)),
    ),
    max_size=700,
)


@given(texts, st.sampled_from(["udh8", "udh16"]), st.booleans(), st.integers(0, 0xFFFF))
def test_count_is_the_number_of_segments_encode_makes(value: str, concat: str, gbk: bool, ref: int) -> None:
    segmenter = CmppSegmenter(allow_gbk=gbk)
    try:
        count = segmenter.count(value, concat=concat, max_segments=255)
    except TooManySegments:
        with pytest.raises(TooManySegments):
            segmenter.encode(value, concat=concat, ref=ref, max_segments=255)
        return
    segments = segmenter.encode(value, concat=concat, ref=ref, max_segments=255)
    assert len(segments) == count
    assert [s.seq for s in segments] == list(range(1, count + 1))
    assert all(s.total == count and len(s.short_message) <= 140 for s in segments)
    assert all(s.udh == (count > 1) for s in segments)
    parts = [text.Part(s.total, s.seq, int(s.udh), s.data_coding, s.short_message) for s in segments]
    assert text.reassemble(parts) == value


@pytest.mark.parametrize(
    ("value", "concat", "msg_fmt", "sizes"),
    [
        ("a" * 140, "udh8", MSG_FMT_ASCII, [140]),
        ("a" * 141, "udh8", MSG_FMT_ASCII, [134, 7]),
        ("a" * 141, "udh16", MSG_FMT_ASCII, [133, 8]),
        (HAN * 70, "udh8", MSG_FMT_UCS2, [70]),
        (HAN * 71, "udh8", MSG_FMT_UCS2, [67, 4]),
        (HAN * 71, "udh16", MSG_FMT_UCS2, [66, 5]),
    ],
)
def test_parts_hold_140_octets_alone_and_less_their_udh_when_joined(
    value: str, concat: str, msg_fmt: int, sizes: list[int]
) -> None:
    segments = CmppSegmenter().encode(value, concat=concat, ref=7, max_segments=10)
    assert {s.data_coding for s in segments} == {msg_fmt}
    udh = {1: 0, 2: text.UDH_LENGTH["udh8" if concat == "udh8" else "udh16"]}[min(len(sizes), 2)]
    per_char = 1 if msg_fmt == MSG_FMT_ASCII else 2
    assert [(len(s.short_message) - udh) // per_char for s in segments] == sizes


def test_gbk_is_used_only_when_the_channel_allows_it() -> None:
    mixed = "会议" * 30 + "Room 3"  # 126 octets in GBK, 132 in UCS-2
    assert CmppSegmenter().encode(mixed, concat="udh8", ref=1, max_segments=5)[0].data_coding == MSG_FMT_UCS2
    gbk = CmppSegmenter(allow_gbk=True).encode(mixed, concat="udh8", ref=1, max_segments=5)
    assert [(s.data_coding, s.short_message) for s in gbk] == [(MSG_FMT_GBK, mixed.encode("gbk"))]
    long_mixed = HAN * 80  # 160 octets: two GBK parts, 67 + 13 characters
    parts = CmppSegmenter(allow_gbk=True).encode(long_mixed, concat="udh8", ref=1, max_segments=5)
    assert [len(s.short_message) for s in parts] == [6 + 134, 6 + 26]


def test_the_segmenter_of_a_channel_follows_its_allow_gbk_option() -> None:
    settings = CmppChannel.Options.model_validate({"host": "h", "sp_id": "901234", "allow_gbk": True})
    segmenter = CmppChannel.segmenter(settings)
    assert isinstance(segmenter, CmppSegmenter) and segmenter.allow_gbk
    plain = CmppChannel.segmenter(CmppChannel.Options.model_validate({"host": "h", "sp_id": "901234"}))
    assert isinstance(plain, CmppSegmenter) and not plain.allow_gbk


def test_a_text_needing_more_segments_than_allowed_raises_the_splitters_error() -> None:
    with pytest.raises(TooManySegments) as info:
        CmppSegmenter().count(HAN * 200, concat="udh8", max_segments=2)
    assert (info.value.needed, info.value.maximum, info.value.length) == (3, 2, 200)
    assert info.value.encoding == "ucs2"
    with pytest.raises(TooManySegments, match="ascii"):
        CmppSegmenter().encode("x" * 1000, concat="udh8", ref=0, max_segments=3)


def test_the_reference_is_masked_to_its_field() -> None:
    udh8 = CmppSegmenter().encode("a" * 200, concat="udh8", ref=0x1234, max_segments=5)
    assert [s.short_message[:6] for s in udh8] == [bytes([5, 0, 3, 0x34, 2, n]) for n in (1, 2)]
    udh16 = CmppSegmenter().encode("a" * 200, concat="udh16", ref=0x51234, max_segments=5)
    assert [s.short_message[:7] for s in udh16] == [bytes([6, 8, 4, 0x12, 0x34, 2, n]) for n in (1, 2)]


@pytest.mark.parametrize("concat", ["sar", "payload", "udh"])
def test_concatenations_cmpp_cannot_carry_are_refused(concat: str) -> None:
    with pytest.raises(ValueError, match="udh8 or udh16"):
        CmppSegmenter().count("hello", concat=concat, max_segments=5)
    with pytest.raises(ValueError, match="udh8 or udh16"):
        CmppSegmenter().encode("hello", concat=concat, ref=0, max_segments=5)


def test_an_unpaired_surrogate_is_a_value_error() -> None:
    with pytest.raises(ValueError) as info:
        CmppSegmenter().count("bad \ud800", concat="udh8", max_segments=5)
    assert not isinstance(info.value, TooManySegments)


def test_the_segmenter_names_the_alphabet_a_text_goes_out_in() -> None:
    plain, chinese = CmppSegmenter(), CmppSegmenter(allow_gbk=True)
    assert (plain.encoding("Hello"), plain.encoding("通知"), chinese.encoding("通知")) == (
        "ascii",
        "ucs2",
        "gbk",
    )


def test_a_text_is_planned_once_however_many_deliveries_send_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from masd_adapters import cn_text

    calls = []
    real = cn_text.plan
    monkeypatch.setattr(cn_text, "plan", lambda *a, **k: calls.append(a) or real(*a, **k))
    seg = CmppSegmenter()
    text = "防汛通知：" * 30
    n = seg.count(text, concat="udh8", max_segments=10)
    sent = [seg.encode(text, concat="udh8", ref=ref, max_segments=10) for ref in range(100)]
    assert len(calls) == 1
    assert all(len(s) == n for s in sent)
    assert {s[0].short_message[3] for s in sent} == set(range(100))  # each delivery its own reference
