"""A driver whose protocol cuts texts its own way (CMPP) supplies a Segmenter; the core counts a delivery's
segments with it when it accepts the message and sends what the same segmenter encodes, so the two agree.
Drivers that supply none (SMPP, the simulator) keep the core's SMS splitter."""

from __future__ import annotations

from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from masd.config import Config, load_config
from masd.core import gateway as gateway_module
from masd.core import split
from masd.core.dispatch import Dispatcher
from masd.core.gateway import Gateway, Rejected, SubmitRequest
from masd_adapters.base import (
    ChannelDriver,
    ChannelEvents,
    DriverOptions,
    OutboundSegment,
    Segmenter,
    SubmitOutcome,
    option,
)


class TenPerSegment(Segmenter):
    """A made-up wire: ten characters per segment, data_coding 15, the reference in each segment."""

    def count(self, text: str, *, concat: str, max_segments: int) -> int:
        n = -(-len(text) // 10)
        if n > max_segments:
            raise split.TooManySegments(n, max_segments, length=len(text), encoding="ascii")
        return n

    def encode(self, text: str, *, concat: str, ref: int, max_segments: int) -> list[OutboundSegment]:
        n = self.count(text, concat=concat, max_segments=max_segments)
        return [
            OutboundSegment(
                i + 1, n, data_coding=15, short_message=bytes([ref]) + text[i * 10 : i * 10 + 10].encode()
            )
            for i in range(n)
        ]


class Options(DriverOptions):
    tag: str = option("", "any text")


class OwnWire(ChannelDriver):
    driver = "ownwire"
    Options = Options

    @classmethod
    def segmenter(cls, settings: DriverOptions) -> Segmenter | None:
        assert isinstance(settings, Options)
        return TenPerSegment()

    async def run(self, *, task_status: Any = None) -> None:  # pragma: no cover - not run here
        raise NotImplementedError

    async def submit(
        self, destination: str, source: str, segments: Sequence[OutboundSegment]
    ) -> list[SubmitOutcome]:
        raise NotImplementedError  # pragma: no cover - not run here


NO_STORE = SimpleNamespace(dialect="sqlite")  # what a Gateway asks of its store when it is made


def _config() -> Config:
    return load_config(
        None,
        env={
            "MASD_NODE__DATA_DIR": "/nonexistent",
            "MASD_CHANNELS__SIM__DRIVER": "ownwire",
            "MASD_CHANNELS__SIM__OPTIONS__TAG": "x",
        },
    )


@pytest.fixture
def own_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    real = gateway_module.driver_class
    monkeypatch.setattr(
        gateway_module, "driver_class", lambda name: OwnWire if name == "ownwire" else real(name)
    )


def test_the_gateway_counts_segments_as_the_channels_driver_cuts_them(own_wire: None) -> None:
    cfg = _config()
    gw = Gateway(cfg, NO_STORE)  # type: ignore[arg-type]  # prepare reads no store
    msg = gw.prepare(SubmitRequest(text="x" * 25, recipients=["13800138000"]), interface="test", app_id=None)
    assert [d.segments for d in msg.deliveries] == [3]  # the SMS splitter would say 1


def test_a_text_the_driver_cannot_carry_is_refused_naming_the_text(own_wire: None) -> None:
    cfg = _config()
    gw = Gateway(cfg, NO_STORE)  # type: ignore[arg-type]
    with pytest.raises(Rejected) as e:
        gw.prepare(SubmitRequest(text="x" * 1000, recipients=["13800138000"]), interface="test", app_id=None)
    assert e.value.field == "text"
    assert "maximum" in str(e.value)


def test_the_dispatcher_sends_what_the_same_segmenter_encodes(own_wire: None) -> None:
    cfg = _config()
    gw = Gateway(cfg, NO_STORE)  # type: ignore[arg-type]
    events: ChannelEvents = gw
    driver = OwnWire("sim", cfg.channels["sim"].options, events, "/nonexistent")
    disp = Dispatcher("sim", cfg.channels["sim"], driver, gw, cfg, "node")
    wire = disp._wire("x" * 25, 7)
    assert [(s.seq, s.total, s.data_coding, s.short_message[0]) for s in wire] == [
        (1, 3, 15, 7),
        (2, 3, 15, 7),
        (3, 3, 15, 7),
    ]


def test_the_simulator_keeps_the_cores_sms_splitter() -> None:
    cfg = load_config(None, env={"MASD_NODE__DATA_DIR": "/nonexistent"})
    gw = Gateway(cfg, NO_STORE)  # type: ignore[arg-type]
    assert gw.segmenter("sim") is None
    msg = gw.prepare(SubmitRequest(text="x" * 160, recipients=["13800138000"]), interface="test", app_id=None)
    assert [d.segments for d in msg.deliveries] == [1]  # GSM 7-bit: 160 in one
