"""Specification of masd_adapters.smpp.mo: MO text decoding, UDH / SAR concatenation, and what a
deliver_sm's user data becomes (a whole reply, or a part that masd.core.reply_parts joins)."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masd.core import gsm7
from masd.core.reply_parts import MISSING, Part, gaps, join
from masd_adapters.base import InboundReply, InboundReplyPart
from masd_adapters.smpp import constants, fast
from masd_adapters.smpp.mo import codec_of, concat_info, decode_text, read_mo, split_udh

GSM_CHARS = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCXYZÄÖÑÜ§¿abcxyzäöñüà^{}\\[~]|€"
)

# --- decode_text -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data_coding", "body", "text"),
    [
        (0x00, gsm7.encode_unpacked("Hi @ 3€ {ok}"), "Hi @ 3€ {ok}"),
        (0x01, b"plain ascii", "plain ascii"),
        (0x03, "café".encode("latin-1"), "café"),
        (0x08, "会议改到三点".encode("utf-16-be"), "会议改到三点"),
        (0x08, "ok 👍".encode("utf-16-be"), "ok 👍"),  # surrogate pair
        (0x08, "好".encode("utf-16-be") + b"\x00", "好"),  # odd length: last octet dropped
        (0x02, b"\x00\xff\x10", "\x00\xff\x10"),  # binary as Latin-1
        (0x04, b"\x01\x02", "\x01\x02"),
        (0x06, "Привет".encode("iso8859_5"), "Привет"),
        (0x0F, "你好".encode("gbk"), "你好"),
        (0xF0, gsm7.encode_unpacked("flash"), "flash"),  # class 0, default alphabet
        (0xF1, gsm7.encode_unpacked("class 1"), "class 1"),
        (0xF4, b"\xe9t\xe9", "été"),  # class 0, 8-bit data
        (0x18, "β".encode("utf-16-be"), "β"),  # general group, class 0, UCS-2
        (0x11, gsm7.encode_unpacked("gsm"), "gsm"),  # general group, class 1, default alphabet
        (0x15, b"\xe9", "é"),  # general group, 8-bit
        (0xC8, gsm7.encode_unpacked("voicemail"), "voicemail"),  # MWI discard, default alphabet
        (0xE0, "语音".encode("utf-16-be"), "语音"),  # MWI store, UCS-2
    ],
)
def test_decode_text(data_coding: int, body: bytes, text: str) -> None:
    assert decode_text(data_coding, body) == text


def test_gsm7_with_high_octets_falls_back_to_latin1() -> None:
    assert decode_text(0, b"caf\xe9") == "café"


def test_default_alphabet_latin1() -> None:
    # Some SMSCs send ASCII under data_coding 0: '@' is 0x40, which GSM 03.38 reads as '¡'.
    assert decode_text(0, b"a@b_c") == "a¡b§c"
    assert decode_text(0, b"a@b_c", default_alphabet="latin-1") == "a@b_c"


@given(st.integers(0, 255), st.binary(max_size=100))
def test_decode_text_never_raises(data_coding: int, body: bytes) -> None:
    assert isinstance(decode_text(data_coding, body), str)


# --- split_udh / concat_info -------------------------------------------------------------------------


def test_split_udh() -> None:
    sm = b"\x05\x00\x03\x2a\x02\x01hello"
    assert split_udh(sm, 0x40) == (b"\x05\x00\x03\x2a\x02\x01", b"hello")
    assert split_udh(sm, 0x00) == (b"", sm)
    assert split_udh(b"", 0x40) == (b"", b"")
    assert split_udh(b"\x09\x00\x03", 0x40) == (b"", b"\x09\x00\x03")  # UDHL past the end


def test_concat_info_udh8_udh16_sar() -> None:
    assert concat_info(b"\x05\x00\x03\x2a\x03\x02", {}) == ("udh8:42", 3, 2)
    assert concat_info(b"\x06\x08\x04\x12\x34\x04\x01", {}) == ("udh16:4660", 4, 1)
    sar = {
        constants.SAR_MSG_REF_NUM: b"\x01\x00",
        constants.SAR_TOTAL_SEGMENTS: b"\x02",
        constants.SAR_SEGMENT_SEQNUM: b"\x02",
    }
    assert concat_info(b"", sar) == ("sar:256", 2, 2)
    assert concat_info(b"", {}) is None


def test_concat_info_skips_other_ies() -> None:
    # A port-addressing IE (0x05) before the concatenation IE.
    udh = b"\x0b\x05\x04\x0b\x84\x23\xf0\x00\x03\x07\x02\x02"
    assert concat_info(udh, {}) == ("udh8:7", 2, 2)


@pytest.mark.parametrize(
    "udh",
    [
        b"\x05\x00\x03\x2a\x00\x01",  # total 0
        b"\x05\x00\x03\x2a\x02\x00",  # seq 0
        b"\x05\x00\x03\x2a\x02\x03",  # seq beyond total
        b"\x05\x00\x05\x2a\x02",  # truncated IE
        b"\x04\x00\x02\x2a\x02",  # wrong IE length
    ],
)
def test_concat_info_inconsistent_is_none(udh: bytes) -> None:
    assert concat_info(udh, {}) is None


@given(st.binary(max_size=40), st.dictionaries(st.integers(0, 0xFFFF), st.binary(max_size=4), max_size=4))
def test_concat_info_never_raises(udh: bytes, tlvs: dict[int, bytes]) -> None:
    result = concat_info(udh, tlvs)
    assert result is None or 1 <= result[2] <= result[1]


# --- read_mo: a whole reply, or one part of a long one -----------------------------------------------


def _udh8(ref: int, total: int, seq: int) -> bytes:
    return bytes((5, 0x00, 3, ref & 0xFF, total, seq))


def _udh16(ref: int, total: int, seq: int) -> bytes:
    return bytes((6, 0x08, 4, ref >> 8 & 0xFF, ref & 0xFF, total, seq))


def _parts(scheme: str, body: bytes, cuts: list[int], ref: int) -> list[tuple[bytes, int, dict[int, bytes]]]:
    """(short_message, esm_class, tlvs) for each part of ``body`` cut at the given offsets."""
    bounds = [0, *cuts, len(body)]
    chunks = [body[a:b] for a, b in itertools.pairwise(bounds)]
    total = len(chunks)
    out: list[tuple[bytes, int, dict[int, bytes]]] = []
    for seq, chunk in enumerate(chunks, start=1):
        if scheme == "udh8":
            out.append((_udh8(ref, total, seq) + chunk, 0x40, {}))
        elif scheme == "udh16":
            out.append((_udh16(ref, total, seq) + chunk, 0x40, {}))
        else:
            tlvs = {
                constants.SAR_MSG_REF_NUM: ref.to_bytes(2, "big"),
                constants.SAR_TOTAL_SEGMENTS: bytes((total,)),
                constants.SAR_SEGMENT_SEQNUM: bytes((seq,)),
            }
            out.append((chunk, 0, tlvs))
    return out


def _read(
    part: tuple[bytes, int, dict[int, bytes]], dcs: int, sender: str = "8613800138000"
) -> InboundReply | InboundReplyPart:
    sm, esm, tlvs = part
    return read_mo(
        sender=sender,
        destination="10690001234",
        data_coding=dcs,
        short_message=sm,
        esm_class=esm,
        tlvs=tlvs,
        received_at=1_800_000_000.0,
    )


def _as_part(got: InboundReply | InboundReplyPart) -> InboundReplyPart:
    assert isinstance(got, InboundReplyPart), got
    return got


def _collect(parts: list[InboundReplyPart]) -> dict[int, Part]:
    """What a store holds of these parts: the first copy of each seq."""
    held: dict[int, Part] = {}
    for p in parts:
        held.setdefault(p.seq, (p.codec, p.body))
    return held


def test_single_part_is_a_whole_reply() -> None:
    assert _read((gsm7.encode_unpacked("1"), 0, {}), 0) == InboundReply("8613800138000", "10690001234", "1")


def test_single_part_in_message_payload() -> None:
    text = "长回复" * 100
    reply = _read((b"", 0, {constants.MESSAGE_PAYLOAD: text.encode("utf-16-be")}), 8)
    assert reply == InboundReply("8613800138000", "10690001234", text)


def test_total_one_is_a_whole_reply() -> None:
    reply = _read((_udh8(9, 1, 1) + b"abc", 0x40, {}), 0)
    assert reply == InboundReply("8613800138000", "10690001234", "abc")


@pytest.mark.parametrize(
    ("scheme", "reference"), [("udh8", "udh8:7"), ("udh16", "udh16:300"), ("sar", "sar:300")]
)
def test_a_part_carries_its_reference_position_codec_and_raw_body(scheme: str, reference: str) -> None:
    body = "会议改到三点".encode("utf-16-be")
    ref = 7 if scheme == "udh8" else 300
    got = _as_part(_read(_parts(scheme, body, [4], ref)[1], 8))
    assert got == InboundReplyPart(
        "8613800138000", "10690001234", reference, 2, 2, "ucs2", body[4:], 1_800_000_000.0
    )


def test_codec_of_data_coding_zero_follows_the_default_alphabet() -> None:
    assert codec_of(0) == "gsm7"
    assert codec_of(0, default_alphabet="latin-1") == "latin-1"
    assert codec_of(0xF0, default_alphabet="latin-1") == "gsm7"  # class 0, default alphabet: not dc 0
    assert codec_of(0x08) == "ucs2" and codec_of(0x0F) == "gb18030"


def test_surrogate_pair_split_across_parts_survives() -> None:
    text = "ok 👍 done"
    body = text.encode("utf-16-be")
    cut = text.index("👍") * 2 + 2  # between the high and the low surrogate
    parts = [_as_part(_read(p, 8)) for p in _parts("udh16", body, [cut], ref=300)]
    assert join(2, _collect(parts)) == text


def test_gsm_escape_split_across_parts_survives() -> None:
    body = gsm7.encode_unpacked("price 5€")
    cut = body.index(gsm7.ESCAPE) + 1
    parts = [_as_part(_read(p, 0)) for p in _parts("sar", body, [cut], ref=1)]
    assert join(2, _collect(parts)) == "price 5€"


def test_parts_with_different_codings_decode_separately() -> None:
    first = _as_part(_read((_udh8(1, 2, 1) + gsm7.encode_unpacked("Hi "), 0x40, {}), 0))
    second = _as_part(_read((_udh8(1, 2, 2) + "世界".encode("utf-16-be"), 0x40, {}), 8))
    assert join(2, _collect([second, first])) == "Hi 世界"


def test_through_the_wire_codec() -> None:
    text = "会议改到三点，请回复1确认"
    parts = []
    for part in reversed(_parts("udh8", text.encode("utf-16-be"), [10], ref=77)):
        raw = fast.encode_deliver_sm(
            1,
            source_addr="8613800138000",
            destination_addr="106900012345",
            esm_class=part[1],
            data_coding=8,
            short_message=part[0],
            tlvs=part[2],
        )
        sm = fast.decode_sm(raw)
        got = read_mo(
            sender=sm.source_addr.decode(),
            destination=sm.destination_addr.decode(),
            data_coding=sm.data_coding,
            short_message=sm.short_message,
            esm_class=sm.esm_class,
            tlvs=sm.tlvs,
            received_at=0.0,
        )
        parts.append(_as_part(got))
    assert {(p.sender, p.destination, p.reference) for p in parts} == {
        ("8613800138000", "106900012345", "udh8:77")
    }
    assert join(2, _collect(parts)) == text


@st.composite
def _split_message(draw: st.DrawFn) -> tuple[str, int, bytes, list[int]]:
    if draw(st.booleans()):
        text = draw(st.text(alphabet=st.sampled_from(GSM_CHARS), min_size=1, max_size=600))
        dcs, body = 0, gsm7.encode_unpacked(text)
        cuts = draw(st.lists(st.integers(1, max(1, len(body) - 1)), max_size=8, unique=True))
    else:
        text = draw(st.text(min_size=1, max_size=300))
        dcs, body = 8, text.encode("utf-16-be")
        # Cut on even offsets only (handsets split UCS-2 between code units), possibly inside a pair.
        cuts = [
            2 * c for c in draw(st.lists(st.integers(1, max(1, len(body) // 2 - 1)), max_size=8, unique=True))
        ]
    cuts = sorted(c for c in set(cuts) if 0 < c < len(body))
    return text, dcs, body, cuts


@settings(max_examples=300)
@given(
    message=_split_message(),
    scheme=st.sampled_from(["udh8", "udh16", "sar"]),
    ref=st.integers(0, 0xFFFF),
    seed=st.integers(0, 2**32 - 1),
    dupes=st.integers(0, 3),
)
def test_any_split_read_in_any_order_with_repeats_joins_exactly(
    message: tuple[str, int, bytes, list[int]], scheme: str, ref: int, seed: int, dupes: int
) -> None:
    text, dcs, body, cuts = message
    parts = _parts(scheme, body, cuts, ref)
    rng = random.Random(seed)
    order = parts + [rng.choice(parts) for _ in range(dupes)]
    rng.shuffle(order)
    got = [_read(part, dcs) for part in order]
    if len(parts) == 1:
        assert all(reply == InboundReply("8613800138000", "10690001234", text) for reply in got)
        return
    read = [_as_part(p) for p in got]
    assert len({(p.reference, p.total) for p in read}) == 1
    assert join(len(parts), _collect(read)) == text


@given(message=_split_message(), seed=st.integers(0, 2**32 - 1))
def test_a_part_missing_keeps_what_arrived_and_marks_the_gap(
    message: tuple[str, int, bytes, list[int]], seed: int
) -> None:
    _, dcs, body, cuts = message
    parts = _parts("udh8", body, cuts, 1)
    if len(parts) < 2:
        return
    lost = random.Random(seed).randrange(len(parts))
    read = [_as_part(_read(part, dcs)) for index, part in enumerate(parts) if index != lost]
    held = _collect(read)
    assert MISSING in join(len(parts), held)
    assert gaps(len(parts), held).endswith(f"of {len(parts)} (missing {lost + 1})")
