"""Carrier content rules in the core: a channel's or an app's signature is counted in a delivery's
segments when the message is accepted and sent as counted; a channel's maximum text length is checked
with the signature in; the configuration refuses a signature that is not one, naming the key."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from masd.config import Config, ConfigError, load_config
from masd.core.apps import App
from masd.core.dispatch import Dispatcher
from masd.core.gateway import Gateway, Rejected, SubmitRequest
from masd.core.signature import signed
from masd_adapters.base import ChannelEvents
from masd_adapters.sim import SimChannel

NO_STORE = SimpleNamespace(dialect="sqlite")  # what a Gateway asks of its store when it is made
NUMBER = "13800138000"
SIG = "【市政府办公室】"


def _config(**channel: str) -> Config:
    env = {"MASD_NODE__DATA_DIR": "/nonexistent"}
    env.update({f"MASD_CHANNELS__SIM__{k.upper()}": v for k, v in channel.items()})
    return load_config(None, env=env)


def _prepare(cfg: Config, text: str, app: App | None = None, kind: str = "sms") -> tuple[str, list[int]]:
    gw = Gateway(cfg, NO_STORE)  # type: ignore[arg-type]  # prepare reads no store
    msg = gw.prepare(
        SubmitRequest(text=text, recipients=[NUMBER], kind=kind), interface="test", app_id=None, app=app
    )
    return msg.text, [d.segments for d in msg.deliveries]


def _dispatcher(cfg: Config) -> Dispatcher:
    gw = Gateway(cfg, NO_STORE)  # type: ignore[arg-type]
    events: ChannelEvents = gw
    driver = SimChannel("sim", cfg.channels["sim"].options, events, "/nonexistent")
    return Dispatcher("sim", cfg.channels["sim"], driver, gw, cfg, "node")


def _sent_text(cfg: Config, text: str) -> str:
    wire = _dispatcher(cfg)._wire(text, 7)
    udh = 6 if len(wire) > 1 else 0  # udh8: 05 00 03 ref total seq
    return b"".join(s.short_message[udh:] for s in wire).decode("utf-16-be")


# ----- the configuration ----------------------------------------------------------------------------


def test_a_channel_signature_that_is_not_one_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as e:
        _config(signature="市政府办公室")
    assert "channels.sim.signature" in str(e.value) and "【市政府办公室】" in str(e.value)


def test_a_channel_without_signature_or_length_limit_is_the_default() -> None:
    ch = _config().channels["sim"]
    assert (ch.signature, ch.signature_position, ch.max_text_length) == ("", "front", None)


def test_a_bad_signature_position_or_length_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"channels\.sim\.signature_position"):
        _config(signature=SIG, signature_position="middle")
    with pytest.raises(ConfigError, match=r"channels\.sim\.max_text_length"):
        _config(max_text_length="0")


# ----- counting at accept -----------------------------------------------------------------------------


def test_the_channels_signature_is_counted_in_the_segments_but_not_stored() -> None:
    cfg = _config(signature=SIG)
    text = "开" * 64  # 64 UCS-2 characters fit one segment of 70; with 7 more they need two
    assert _prepare(_config(), text) == (text, [1])
    assert _prepare(cfg, text) == (text, [2])


def test_a_text_that_carries_a_signature_is_counted_without_a_second() -> None:
    text = "开" * 62 + "【会务组】"
    assert _prepare(_config(signature=SIG), text) == (text, [1])


def test_the_apps_signature_is_stored_in_the_text_and_wins_over_the_channels() -> None:
    app = App(id=1, name="oa", signature="【会务组】")
    stored, segments = _prepare(_config(signature=SIG, signature_position="back"), "明天开会", app)
    assert (stored, segments) == ("明天开会【会务组】", [1])


def test_an_app_text_that_carries_a_signature_is_stored_as_written() -> None:
    app = App(id=1, name="oa", signature="【会务组】")
    assert _prepare(_config(), "【市政府】明天开会", app)[0] == "【市政府】明天开会"


def test_a_text_longer_than_the_channel_takes_with_its_signature_is_refused_with_the_counts() -> None:
    cfg = _config(signature=SIG, max_text_length="70")
    with pytest.raises(Rejected) as e:
        _prepare(cfg, "开" * 67)
    assert e.value.field == "text"
    assert (
        e.value.reason == "is 75 characters with the signature 【市政府办公室】; channel sim takes at most 70"
    )


def test_a_text_within_the_channels_length_with_its_signature_is_accepted() -> None:
    assert _prepare(_config(signature=SIG, max_text_length="70"), "开" * 62)[1] == [1]


def test_the_length_refusal_names_the_apps_signature_when_that_was_added() -> None:
    app = App(id=1, name="oa", signature="【会务组】")
    with pytest.raises(Rejected) as e:
        _prepare(_config(max_text_length="10"), "明天上午开会", app)
    assert e.value.reason == "is 11 characters with the signature 【会务组】; channel sim takes at most 10"


def test_the_length_refusal_names_no_signature_when_the_text_brought_its_own() -> None:
    with pytest.raises(Rejected) as e:
        _prepare(_config(signature=SIG, max_text_length="10"), "明天上午九点开会【会务组】")
    assert e.value.reason == "is 13 characters; channel sim takes at most 10"


def test_too_many_segments_because_of_the_signature_says_so() -> None:
    with pytest.raises(Rejected) as e:
        _prepare(_config(signature=SIG), "开" * (67 * 10 - 3))  # ten segments of 67, the signature tips it
    assert e.value.reason.endswith("with the signature 【市政府办公室】")


def test_the_encoding_is_what_the_channel_sends_with_its_signature() -> None:
    gw = Gateway(_config(signature=SIG), NO_STORE)  # type: ignore[arg-type]
    msg = gw.prepare(SubmitRequest(text="hello", recipients=[NUMBER]), interface="test", app_id=None)
    assert (msg.text, msg.encoding) == ("hello", "ucs2")


def test_a_voice_message_gets_no_signature() -> None:
    cfg = load_config(
        None,
        env={
            "MASD_NODE__DATA_DIR": "/nonexistent",
            "MASD_CHANNELS__SIM__SIGNATURE": SIG,
            "MASD_CHANNELS__VOICE__DRIVER": "voice_sim",
            "MASD_CHANNELS__VOICE__KIND": "voice",
            "MASD_CHANNELS__VOICE__SIGNATURE": SIG,
        },
    )
    app = App(id=1, name="oa", signature="【会务组】")
    assert _prepare(cfg, "明天开会", app, kind="voice") == ("明天开会", [1])


# ----- sending --------------------------------------------------------------------------------------


def test_the_dispatcher_sends_the_text_with_the_channels_signature() -> None:
    assert _sent_text(_config(signature=SIG), "明天开会") == "【市政府办公室】明天开会"
    assert (
        _sent_text(_config(signature=SIG, signature_position="back"), "明天开会")
        == "明天开会【市政府办公室】"
    )


def test_the_dispatcher_sends_as_many_segments_as_were_counted() -> None:
    cfg = _config(signature=SIG)
    text = "开" * 64
    assert len(_dispatcher(cfg)._wire(text, 7)) == _prepare(cfg, text)[1][0] == 2
    assert _sent_text(cfg, text) == SIG + text


def test_the_dispatcher_adds_no_second_signature_and_remembers_the_signed_text() -> None:
    cfg = _config(signature=SIG)
    disp = _dispatcher(cfg)
    long_text = "开" * 140
    first = disp._wire(long_text, 1)
    again = disp._wire(long_text, 2)
    assert len(first) == len(again) == 3 and first[0].short_message[3] == 1 and again[0].short_message[3] == 2
    assert _sent_text(cfg, "明天开会【会务组】") == "明天开会【会务组】"


def test_the_meeting_modules_signature_with_a_channel_signature_stays_single() -> None:
    # The meeting module appends [meeting] signature to its SMS; the channel's is then not added.
    notice = "请于明天上午9点到三楼会议室开会，回复1参加，2请假【市政府办公室】"
    cfg = _config(signature="【市政府】")
    assert _prepare(cfg, notice) == (notice, [1])
    assert _sent_text(cfg, notice) == notice
    assert signed(notice, "【市政府】", "front") == notice
