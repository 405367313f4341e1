"""Specification of the speech a simulated call plays (``masd_adapters.tts``): G.711 μ-law as the ITU-T
G.191 reference encodes it, a resampler to 8 kHz that keeps speech and removes what telephony cannot
carry, the μ-law WAV container, and Mandarin synthesis with espeak-ng (those tests need the Debian
package ``espeak-ng`` and are skipped, saying so, where it is not installed)."""

from __future__ import annotations

import itertools
import math
import shutil
import struct
from pathlib import Path

import pytest
import trio

from masd_adapters import tts
from masd_adapters.base import InboundReceipt, InboundReply, OutboundSegment

NOTICE = "张三您好：明天上午九点在三楼会议室召开年度总结会。参加请按1，不参加请按2。"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def g191_ulaw(x: int) -> int:
    """μ-law of one 16-bit sample, written the way ITU-T G.191's ulaw_compress computes it."""
    absno = ((~x) >> 2) + 33 if x < 0 else (x >> 2) + 33
    absno = min(absno, 0x1FFF)
    i = absno >> 6
    segno = 1
    while i:
        segno += 1
        i >>= 1
    code = ((8 - segno) << 4) | (0x0F - ((absno >> segno) & 0x0F))
    return code | 0x80 if x >= 0 else code


def tone(freq: float, rate: int, seconds: float = 1.0, amplitude: int = 10_000) -> list[int]:
    return [round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(int(rate * seconds))]


def test_mulaw_encoding_matches_the_g191_reference_for_every_sample() -> None:
    samples = range(-32768, 32768)
    assert tts.mulaw_encode(samples) == bytes(g191_ulaw(x) for x in samples)


def test_mulaw_codes_at_zero_and_full_scale() -> None:
    assert list(tts.mulaw_encode([0, -1, 32767, -32768])) == [0xFF, 0x7F, 0x80, 0x00]
    assert tts.mulaw_decode(bytes([0xFF, 0x80, 0x00])) == [0, 32124, -32124]


def test_every_mulaw_code_decodes_to_a_value_that_encodes_back_to_it() -> None:
    codes = bytes(b for b in range(256) if b != 0x7F)  # 0x7F is "negative zero": it decodes to 0 = 0xFF
    assert tts.mulaw_encode(tts.mulaw_decode(codes)) == codes


def test_resampling_to_8khz_keeps_a_1khz_tone() -> None:
    out = tts.resample(tone(1000, 22050), 22050)
    assert len(out) == 8000
    middle = out[100:-100]
    assert 9_800 <= max(middle) <= 10_200
    crossings = sum(1 for a, b in itertools.pairwise(middle) if a < 0 <= b)
    assert crossings == pytest.approx(1000 * len(middle) / 8000, abs=2)


def test_resampling_to_8khz_removes_a_tone_above_4khz_instead_of_folding_it_back() -> None:
    out = tts.resample(tone(6000, 22050), 22050)
    assert max(abs(x) for x in out[100:-100]) < 100


def test_a_mulaw_wav_declares_format_7_mono_8khz_and_pads_an_odd_length() -> None:
    wav = tts.mulaw_wav(b"\x01\x02\x03")
    assert wav[:4] == b"RIFF" and wav[8:12] == b"WAVE"
    assert struct.unpack("<I", wav[4:8])[0] == len(wav) - 8
    assert wav[12:16] == b"fmt "
    tag, channels, rate, per_second, align, bits = struct.unpack("<HHIIHH", wav[20:36])
    assert (tag, channels, rate, per_second, align, bits) == (7, 1, 8000, 8000, 1, 8)
    data_at = wav.index(b"data")
    assert struct.unpack("<I", wav[data_at + 4 : data_at + 8])[0] == 3
    assert wav[data_at + 8 :] == b"\x01\x02\x03\x00"


@needs_espeak
def test_a_mandarin_notice_is_spoken_into_an_8khz_mulaw_wav(tmp_path: Path) -> None:
    path = tmp_path / "notice.wav"
    seconds = tts.synthesize(NOTICE, str(path))
    wav = path.read_bytes()
    assert struct.unpack("<HHI", wav[20:28]) == (7, 1, 8000)
    data_at = wav.index(b"data")
    audio = wav[data_at + 8 :]
    assert 3 < seconds < 30 and len(audio) == round(seconds * 8000)
    loud = [x for x in tts.mulaw_decode(audio) if abs(x) > 1000]
    assert len(loud) > len(audio) / 10  # speech, not silence
    assert [p.name for p in tmp_path.iterdir()] == ["notice.wav"]  # no temporary file left behind


@needs_espeak
def test_an_unknown_voice_is_reported_as_speech_unavailable(tmp_path: Path) -> None:
    with pytest.raises(tts.SpeechUnavailable, match="nosuchvoice"):
        tts.synthesize(NOTICE, str(tmp_path / "x.wav"), voice="nosuchvoice")
    assert list(tmp_path.iterdir()) == []


class _Events:
    def __init__(self) -> None:
        self.receipts: list[InboundReceipt] = []

    async def receipt(self, channel: str, receipt: InboundReceipt) -> None:
        self.receipts.append(receipt)

    async def reply(self, channel: str, reply: InboundReply) -> None:
        pass

    def link_state(self, channel: str, up: bool) -> None:
        pass


async def _one_call(tmp_path: Path, **options: object) -> tuple[str, _Events, str]:
    from masd_adapters.voice_sim import VoiceSimChannel

    events = _Events()
    sim = VoiceSimChannel("voice", {"time_scale": 0, "speech": True, **options}, events, str(tmp_path))
    seg = OutboundSegment(1, 1, data_coding=8, short_message=NOTICE.encode())
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.run)
        [outcome] = await sim.submit("13800000001", "1065700942", [seg])
        assert outcome.carrier_id is not None
        with trio.fail_after(30):
            while not events.receipts:
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    return outcome.carrier_id, events, sim.speech_path(outcome.carrier_id)


@needs_espeak
async def test_with_speech_on_each_call_writes_what_it_plays_beside_the_journal(tmp_path: Path) -> None:
    call_id, _, path = await _one_call(tmp_path)
    assert path == str(tmp_path / "voice-voice" / f"{call_id}.wav")
    assert Path(path).read_bytes()[:4] == b"RIFF"


async def test_a_call_whose_speech_fails_still_ends_with_its_receipt(tmp_path: Path) -> None:
    call_id, events, path = await _one_call(tmp_path, speech_voice="nosuchvoice")
    assert [r.carrier_id for r in events.receipts] == [call_id]
    assert not Path(path).exists()
