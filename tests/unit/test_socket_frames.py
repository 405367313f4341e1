"""The socket interface's frames and outbox, without a network: parsing, pushes, refusals, ordering."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

from masd.core.apps import Forbidden, QuotaExceeded, RateLimited
from masd.core.gateway import QueueFull, Rejected
from masd.interfaces.socket import (
    FrameError,
    Outbox,
    encode,
    error_frame,
    parse_frame,
    parse_message_id,
    parse_submit,
    push_frame,
    refusal_frame,
)


def _submit(**fields: Any) -> dict[str, Any]:
    return {"type": "submit", "ref": "r1", "to": "13800138000", "text": "hi", **fields}


# ----- encode / parse_frame ------------------------------------------------------------------------------


def test_a_frame_is_one_line_of_utf8_json() -> None:
    data = encode({"type": "reply", "text": "收到\n谢谢"})
    assert data.endswith(b"\n")
    assert data.count(b"\n") == 1  # the newline inside the text is escaped
    assert "收到".encode() in data
    assert json.loads(data) == {"type": "reply", "text": "收到\n谢谢"}


def test_parse_frame_reads_an_object_with_a_type() -> None:
    assert parse_frame(b'{"type":"ping","id":7}') == {"type": "ping", "id": 7}


@pytest.mark.parametrize(
    ("line", "field", "words"),
    [
        (b"hello", None, "not valid JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b"42", None, "JSON object"),
        (b'{"id": 1}', "type", "missing"),
        (b'{"type": 5}', "type", "string"),
        (b"\xc3\x28", None, "not valid UTF-8"),
        (b'{"type":"submit","text":"caf\xe9"}', None, "not valid UTF-8 (byte 0xe9"),
        (b'{"type":"submit","text":"\\ud800"}', "text", "\\ud800"),
        (b'{"type":"submit","to":["13800138000","\\udc00x"]}', "to", "surrogate"),
        (b'{"type":"ping","\\ud800":1}', None, "field name"),
        (b'{"type":"submit","priority":NaN}', "priority", "not a finite number"),
        (b'{"type":"submit","validity_seconds":Infinity}', "validity_seconds", "not a finite number"),
        (b'{"type":"ping","id":-Infinity}', "id", "not a finite number"),
        (b'{"type":"ping","id":1e400}', "id", "not a finite number"),
        (b'{"type":"submit","priority":1' + b"0" * 400 + b"}", "priority", "out of range"),
        (b'{"type":"submit","send_at":-1' + b"0" * 19 + b"}", "send_at", "out of range"),
        (b'{"type":"ping","id":' + b"9" * 5000 + b"}", None, "too many digits"),
        (b'{"type":"ping","id":' + b"[" * 40 + b"]" * 40 + b"}", None, "more than 32 deep"),
        (b'{"type":"ping","id":' + b"[" * 30000 + b"]" * 30000 + b"}", None, "more than 32 deep"),
        (b"[" * 65000, None, "more than 32 deep"),
        (b"NaN", None, "not a finite number"),
    ],
)
def test_parse_frame_names_what_is_wrong(line: bytes, field: str | None, words: str) -> None:
    with pytest.raises(FrameError) as info:
        parse_frame(line)
    assert info.value.field == field
    assert words in info.value.reason
    assert info.value.code == "invalid"


def test_nesting_up_to_the_limit_is_a_frame() -> None:
    assert parse_frame(b'{"type":"ping","id":' + b"[" * 31 + b"]" * 31 + b"}")["type"] == "ping"


def test_a_surrogate_pair_and_a_byte_order_mark_are_fine() -> None:
    frame = parse_frame(b'\xef\xbb\xbf{"type":"submit","text":"\\ud83d\\ude00 \\\\ud800"}')
    assert frame["text"] == "\U0001f600 \\ud800"  # an escaped backslash before "ud800" is just text


def _strict_json(data: bytes) -> Any:
    def refuse(name: str) -> Any:
        raise AssertionError(f"{name} is not JSON")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
@example(b'{"type":"ping","id":"\\udfff"}')
@example(b'{"type":"ping","id":[[[[NaN]]]]}')
def test_any_bytes_become_a_frame_or_an_error_and_either_can_be_written_back(line: bytes) -> None:
    """Whatever a client sends, the answer (an echo of an accepted frame, or the error frame) is JSON
    that encodes: accepted frames hold nothing JSON cannot carry."""
    try:
        frame = parse_frame(line)
    except FrameError as e:
        answer = encode(error_frame(e.code, e.reason, field=e.field))
        assert _strict_json(answer)["type"] == "error"
    else:
        assert _strict_json(encode(frame)) == frame


_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(st.characters() | st.characters(categories=["Cs"])),  # with lone surrogates
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


_FRAMES = st.builds(
    lambda kind, rest: {**rest, "type": kind},
    st.sampled_from(["ping", "submit", "ack", "login", "other"]),
    st.dictionaries(st.sampled_from(["id", "ref", "to", "text", "priority", "key", "event"]), _VALUES),
)


@settings(max_examples=300, deadline=None)
@given(_FRAMES)
@example({"type": "ping", "id": float("nan")})
@example({"type": "submit", "text": "\ud800"})
@example({"type": "submit", "priority": 10**400})
def test_any_json_shape_becomes_a_frame_or_an_error_naming_it(shape: dict[str, Any]) -> None:
    # json.dumps writes NaN, Infinity, huge integers and lone surrogates as a careless client would.
    line = json.dumps(shape).encode()
    try:
        frame = parse_frame(line)
    except FrameError as e:
        assert e.reason
        assert _strict_json(encode(error_frame(e.code, e.reason, field=e.field)))["type"] == "error"
    else:
        assert _strict_json(encode(frame)) == frame


# ----- parse_submit --------------------------------------------------------------------------------------


def test_parse_submit_maps_the_frame_to_the_cores_request() -> None:
    req = parse_submit(
        _submit(
            to=["13800138000", "13900139000"],
            priority=7,
            send_at="2030-05-20T08:30:00+08:00",
            validity_seconds=600,
            extension="17",
            channel="sim",
        )
    )
    assert req.recipients == ["13800138000", "13900139000"]
    assert (req.text, req.client_ref, req.priority, req.validity_seconds) == ("hi", "r1", 7, 600)
    assert req.send_at == datetime(2030, 5, 20, 0, 30, tzinfo=UTC).timestamp()
    assert (req.extension, req.channel) == ("17", "sim")


def test_to_as_a_comma_separated_string_is_split() -> None:
    assert parse_submit(_submit(to="13800138000, 13900139000,")).recipients == ["13800138000", "13900139000"]


def test_a_numeric_ref_is_kept_as_its_decimal_string() -> None:
    assert parse_submit(_submit(ref=42)).client_ref == "42"


def test_a_numeric_extension_is_kept_as_digits() -> None:
    assert parse_submit(_submit(extension=17)).extension == "17"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ref": None}, "ref"),
        ({"ref": ""}, "ref"),
        ({"ref": "x" * 129}, "ref"),
        ({"ref": True}, "ref"),
        ({"to": None}, "to"),
        ({"to": 13800138000}, "to"),
        ({"to": ["13800138000", 5]}, "to"),
        ({"to": " , "}, "to"),
        ({"text": None}, "text"),
        ({"text": 5}, "text"),
        ({"priority": "high"}, "priority"),
        ({"priority": 1.5}, "priority"),
        ({"validity_seconds": True}, "validity_seconds"),
        ({"send_at": 1700000000}, "send_at"),
        ({"send_at": "tomorrow"}, "send_at"),
        ({"extension": ["1"]}, "extension"),
        ({"channel": 3}, "channel"),
        ({"sendat": "2030-05-20T08:30:00Z"}, "sendat"),
    ],
)
def test_parse_submit_names_the_bad_field(fields: dict[str, Any], field: str) -> None:
    frame = {k: v for k, v in _submit(**fields).items() if v is not None}
    with pytest.raises(FrameError) as info:
        parse_submit(frame)
    assert info.value.field == field
    assert info.value.reason


# ----- cancel and retry ------------------------------------------------------------------------------------


def test_cancel_and_retry_frames_name_a_message_by_its_id() -> None:
    assert parse_message_id({"type": "cancel", "id": 42}) == 42
    assert parse_message_id({"type": "retry", "id": 2**63 - 1}) == 2**63 - 1


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "cancel"},
        {"type": "cancel", "id": None},
        {"type": "cancel", "id": "42"},
        {"type": "cancel", "id": True},
        {"type": "cancel", "id": 0},
        {"type": "cancel", "id": 2**63},
        {"type": "retry", "id": 4.0},
    ],
)
def test_a_cancel_or_retry_without_a_usable_id_names_the_id_field(frame: dict[str, Any]) -> None:
    with pytest.raises(FrameError) as info:
        parse_message_id(frame)
    assert info.value.field == "id" and info.value.reason


def test_a_cancel_with_an_unknown_field_is_refused_naming_it() -> None:
    with pytest.raises(FrameError) as info:
        parse_message_id({"type": "cancel", "id": 1, "ids": [1]})
    assert info.value.field == "ids"


# ----- pushes --------------------------------------------------------------------------------------------


def test_a_receipt_event_becomes_a_receipt_frame() -> None:
    frame = push_frame(
        {
            "event": 12,
            "type": "receipt",
            "message_id": 42,
            "client_ref": "order-17",
            "delivery_id": 99,
            "recipient": "13800138000",
            "state": "undelivered",
            "reason": "absent subscriber",
            "error_code": "0x0b",
            "done_at": 1700000000.25,
            "resends": 2,
        }
    )
    assert frame == {
        "type": "receipt",
        "event": 12,
        "id": 42,
        "ref": "order-17",
        "delivery_id": 99,
        "recipient": "13800138000",
        "state": "undelivered",
        "reason": "absent subscriber",
        "error_code": "0x0b",
        "done_at": "2023-11-14T22:13:20.250Z",
        "resends": 2,
    }


def test_a_reply_event_becomes_a_reply_frame() -> None:
    frame = push_frame(
        {
            "event": 13,
            "type": "reply",
            "reply_id": 5,
            "sender": "13800138000",
            "destination": "10657000177",
            "extension": "",
            "text": "1",
            "received_at": 1700000000.0,
            "matched_by": "extension",
            "channel": "sim",
            "delivery_id": None,
            "message_id": None,
            "client_ref": None,
        }
    )
    assert frame["type"] == "reply"
    assert (frame["event"], frame["reply_id"], frame["text"]) == (13, 5, "1")
    assert (frame["sender"], frame["destination"]) == ("13800138000", "10657000177")
    assert frame["received_at"] == "2023-11-14T22:13:20.000Z"
    assert (frame["id"], frame["ref"]) == (None, None)


# ----- refusals ------------------------------------------------------------------------------------------


def test_a_rejection_names_the_fields_as_the_frame_does() -> None:
    err = refusal_frame(Rejected("recipients", "is not a mobile number", index=0), "r9")
    assert err == {
        "type": "error",
        "code": "invalid",
        "reason": "is not a mobile number",
        "field": "to",
        "ref": "r9",
    }


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (Forbidden("channel", "may not send voice"), "forbidden"),
        (RateLimited("rate", "try again in 2.0 s", retry_after=2.0), "rate_limited"),
        (QuotaExceeded("quota", "used 10 of 10", retry_after=3600), "quota_exceeded"),
    ],
)
def test_an_apps_limit_becomes_its_error_code(exc: Exception, code: str) -> None:
    err = refusal_frame(exc, "r1")
    assert (err["code"], err["ref"]) == (code, "r1")
    assert err["field"] == exc.field  # type: ignore[attr-defined]
    assert err.get("retry_after") == exc.retry_after  # type: ignore[attr-defined]


def test_a_full_queue_says_when_to_try_again() -> None:
    err = refusal_frame(QueueFull("the queue is full"), "r1")
    assert (err["code"], err["reason"]) == ("queue_full", "the queue is full")
    assert err["retry_after"] > 0


# ----- the outbox ----------------------------------------------------------------------------------------


async def test_the_outbox_hands_out_frames_in_the_order_their_slots_were_taken() -> None:
    box = Outbox(limit=4)
    first = box.take()
    box.take(b"second\n")
    got: list[bytes] = []

    async def write() -> None:
        got.append(await box.next())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # the first answer is not ready, so the second waits behind it
        box.fill(first, b"first\n")
    assert got == [b"first\nsecond\n"]  # both ready by then: one write carries them
    assert len(box) == 0


async def test_the_outbox_hands_out_the_ready_head_and_keeps_what_waits_behind_an_unready_slot() -> None:
    box = Outbox(limit=4)
    box.take(b"a\n")
    box.take(b"b\n")
    late = box.take()
    box.take(b"d\n")
    assert await box.next() == b"a\nb\n"
    assert len(box) == 2
    box.fill(late, b"c\n")
    assert await box.next() == b"c\nd\n"


async def test_the_outbox_reports_room_until_its_limit() -> None:
    box = Outbox(limit=2)
    box.take(b"a\n")
    assert box.room == 1
    box.take(b"b\n")
    assert box.room == 0
    with trio.move_on_after(0) as scope:
        await box.wait_room()
    assert scope.cancelled_caught  # full: a reader would wait here
    await box.next()
    await box.wait_room()
    assert box.room == 2
