"""Specification of masd_adapters.smpp.mo: MO text decoding, UDH / SAR concatenation and reassembly."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from masd.core import gsm7
from masd_adapters.base import InboundReply
from masd_adapters.smpp import fast
from masd_adapters.smpp.mo import MISSING, Reassembler, concat_info, decode_text, split_udh

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
        fast.SAR_MSG_REF_NUM: b"\x01\x00",
        fast.SAR_TOTAL_SEGMENTS: b"\x02",
        fast.SAR_SEGMENT_SEQNUM: b"\x02",
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


# --- Reassembler -------------------------------------------------------------------------------------


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
                fast.SAR_MSG_REF_NUM: ref.to_bytes(2, "big"),
                fast.SAR_TOTAL_SEGMENTS: bytes((total,)),
                fast.SAR_SEGMENT_SEQNUM: bytes((seq,)),
            }
            out.append((chunk, 0, tlvs))
    return out


def _add(
    r: Reassembler, part: tuple[bytes, int, dict[int, bytes]], dcs: int, now: float = 0.0
) -> InboundReply | None:
    sm, esm, tlvs = part
    return r.add(
        sender="8613800138000",
        destination="10690001234",
        data_coding=dcs,
        short_message=sm,
        esm_class=esm,
        tlvs=tlvs,
        now=now,
    )


def test_single_part_is_returned_at_once() -> None:
    r = Reassembler()
    reply = _add(r, (gsm7.encode_unpacked("1"), 0, {}), 0)
    assert reply == InboundReply("8613800138000", "10690001234", "1")
    assert len(r) == 0


def test_single_part_in_message_payload() -> None:
    r = Reassembler()
    text = "长回复" * 100
    reply = _add(r, (b"", 0, {fast.MESSAGE_PAYLOAD: text.encode("utf-16-be")}), 8)
    assert reply is not None and reply.text == text


def test_total_one_is_single() -> None:
    r = Reassembler()
    reply = _add(r, (_udh8(9, 1, 1) + b"abc", 0x40, {}), 0)
    assert reply is not None and reply.text == "abc"


def test_two_parts_out_of_order_with_duplicate() -> None:
    r = Reassembler()
    p1, p2 = _parts("udh8", gsm7.encode_unpacked("Hello world"), [5], ref=7)
    assert _add(r, p2, 0) is None
    assert _add(r, p2, 0) is None  # duplicate ignored
    assert len(r) == 1
    reply = _add(r, p1, 0)
    assert reply is not None and reply.text == "Hello world" and reply.raw == ""
    assert len(r) == 0


def test_surrogate_pair_split_across_parts_survives() -> None:
    text = "ok 👍 done"
    body = text.encode("utf-16-be")
    cut = text.index("👍") * 2 + 2  # between the high and the low surrogate
    r = Reassembler()
    parts = _parts("udh16", body, [cut], ref=300)
    assert _add(r, parts[1], 8) is None
    reply = _add(r, parts[0], 8)
    assert reply is not None and reply.text == text


def test_gsm_escape_split_across_parts_survives() -> None:
    body = gsm7.encode_unpacked("price 5€")
    cut = body.index(gsm7.ESCAPE) + 1
    r = Reassembler()
    parts = _parts("sar", body, [cut], ref=1)
    assert _add(r, parts[0], 0) is None
    reply = _add(r, parts[1], 0)
    assert reply is not None and reply.text == "price 5€"


def test_different_senders_and_refs_do_not_mix() -> None:
    r = Reassembler()
    a1, a2 = _parts("udh8", b"AAAABBBB", [4], ref=1)
    b1, b2 = _parts("udh8", b"CCCCDDDD", [4], ref=2)
    other = r.add(
        sender="other",
        destination="10690001234",
        data_coding=0,
        short_message=a1[0],
        esm_class=0x40,
        tlvs={},
        now=0,
    )
    assert other is None
    assert _add(r, a1, 0) is None
    assert _add(r, b2, 0) is None
    reply = _add(r, a2, 0)
    assert reply is not None and reply.text == "AAAABBBB"
    reply = _add(r, b1, 0)
    assert reply is not None and reply.text == "CCCCDDDD"
    assert len(r) == 1  # "other" still waits


def test_timeout_yields_partial_reply() -> None:
    r = Reassembler(timeout=60.0)
    parts = _parts("udh8", b"one-two-three-four", [4, 8, 14], ref=5)
    _add(r, parts[0], 0, now=0.0)
    _add(r, parts[2], 0, now=1.0)
    assert r.expire(59.0) == []
    expired = r.expire(60.0)
    assert expired == [
        InboundReply(
            "8613800138000",
            "10690001234",
            f"one-{MISSING}three-{MISSING}",
            raw="incomplete: parts 1,3 of 4 (missing 2,4)",
        )
    ]
    assert len(r) == 0
    assert r.expire(1000.0) == []


def test_consecutive_missing_parts_share_one_marker() -> None:
    r = Reassembler(timeout=1.0)
    parts = _parts("sar", b"abcdef", [1, 2, 3, 4, 5], ref=3)
    _add(r, parts[1], 0)
    _add(r, parts[5], 0)
    [reply] = r.expire(5.0)
    assert reply.text == f"{MISSING}b{MISSING}f"
    assert reply.raw == "incomplete: parts 2,6 of 6 (missing 1,3,4,5)"


def test_bounded_open_assemblies_evict_oldest() -> None:
    r = Reassembler(timeout=60.0, max_open=2)
    for ref in (1, 2, 3):
        first = _parts("udh8", b"xxyy", [2], ref=ref)[0]
        _add(r, first, 0, now=float(ref))
    assert len(r) == 2
    evicted = r.expire(3.0)
    assert [reply.text for reply in evicted] == [f"xx{MISSING}"]
    # The evicted one was ref 1: its second part now opens a new assembly rather than completing it.
    assert _add(r, _parts("udh8", b"xxyy", [2], ref=1)[1], 0, now=4.0) is None
    reply = _add(r, _parts("udh8", b"xxyy", [2], ref=3)[1], 0, now=4.0)
    assert reply is not None and reply.text == "xxyy"


def test_reference_reused_with_other_total_flushes_old() -> None:
    r = Reassembler()
    old = _parts("udh8", b"aabb", [2], ref=9)
    new = _parts("udh8", b"ccddee", [2, 4], ref=9)
    _add(r, old[0], 0)
    assert _add(r, new[0], 0) is None
    assert [reply.text for reply in r.expire(0.0)] == [f"aa{MISSING}"]
    _add(r, new[2], 0)
    reply = _add(r, new[1], 0)
    assert reply is not None and reply.text == "ccddee"


def test_late_duplicate_after_completion_is_dropped() -> None:
    # The SMSC re-sends a part whose deliver_sm_resp it missed, after the message was complete.
    r = Reassembler(timeout=60.0)
    p1, p2 = _parts("udh8", b"firstsecond", [5], ref=4)
    _add(r, p1, 0, now=0.0)
    assert _add(r, p2, 0, now=1.0) is not None
    assert _add(r, p2, 0, now=2.0) is None
    assert len(r) == 0
    assert r.expire(200.0) == []
    # Once the memory of it has expired, the same reference starts a new message.
    assert _add(r, p1, 0, now=201.0) is None
    assert len(r) == 1


def test_reused_reference_with_new_text_is_not_mistaken_for_a_duplicate() -> None:
    r = Reassembler(timeout=60.0)
    for text in (b"aaaabbbb", b"ccccdddd"):
        p1, p2 = _parts("udh8", text, [4], ref=0)
        _add(r, p2, 0)
        reply = _add(r, p1, 0)
        assert reply is not None and reply.text == text.decode()


def test_parts_with_different_codings_decode_separately() -> None:
    r = Reassembler()
    first: tuple[bytes, int, dict[int, bytes]] = (_udh8(1, 2, 1) + gsm7.encode_unpacked("Hi "), 0x40, {})
    second: tuple[bytes, int, dict[int, bytes]] = (_udh8(1, 2, 2) + "世界".encode("utf-16-be"), 0x40, {})
    _add(r, first, 0)
    r_second = r.add(
        sender="8613800138000",
        destination="10690001234",
        data_coding=8,
        short_message=second[0],
        esm_class=0x40,
        tlvs={},
        now=0,
    )
    assert r_second is not None and r_second.text == "Hi 世界"


def test_through_the_wire_codec() -> None:
    r = Reassembler()
    text = "会议改到三点，请回复1确认"
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
        reply = r.add(
            sender=sm.source_addr.decode(),
            destination=sm.destination_addr.decode(),
            data_coding=sm.data_coding,
            short_message=sm.short_message,
            esm_class=sm.esm_class,
            tlvs=sm.tlvs,
            now=0.0,
        )
    assert reply == InboundReply("8613800138000", "106900012345", text)


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
def test_any_split_reassembles_exactly(
    message: tuple[str, int, bytes, list[int]], scheme: str, ref: int, seed: int, dupes: int
) -> None:
    text, dcs, body, cuts = message
    parts = _parts(scheme, body, cuts, ref)
    rng = random.Random(seed)
    order = parts + [rng.choice(parts) for _ in range(dupes)]
    rng.shuffle(order)
    r = Reassembler()
    replies = [reply for part in order if (reply := _add(r, part, dcs)) is not None]
    if len(parts) == 1:
        # A one-part message is handed over as it comes (nothing to wait for), so a repeat of it is a
        # reply of its own; only parts of a longer message are deduplicated here.
        assert all(reply.text == text for reply in replies)
    else:
        assert [reply.text for reply in replies] == [text]
    assert len(r) == 0
    assert r.expire(1e9) == []


@given(message=_split_message(), seed=st.integers(0, 2**32 - 1))
def test_timeout_with_a_part_missing_keeps_what_arrived(
    message: tuple[str, int, bytes, list[int]], seed: int
) -> None:
    _, dcs, body, cuts = message
    parts = _parts("udh8", body, cuts, 1)
    if len(parts) < 2:
        return
    rng = random.Random(seed)
    lost = rng.randrange(len(parts))
    r = Reassembler(timeout=10.0)
    for index, part in enumerate(parts):
        if index != lost:
            assert _add(r, part, dcs, now=0.0) is None
    [reply] = r.expire(10.0)
    assert MISSING in reply.text
    assert reply.raw.startswith("incomplete: parts ")
    assert reply.raw.endswith(f"of {len(parts)} (missing {lost + 1})")
