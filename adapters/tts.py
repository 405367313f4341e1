"""Speech for voice notices: text → 8 kHz G.711 μ-law WAV, the audio a telephone call carries.

The speech comes from ``espeak-ng`` (Debian package ``espeak-ng``; ``-v cmn-latn-pinyin`` reads Mandarin
correctly where plain ``cmn`` misreads many characters), which writes 16-bit PCM at its own rate
(22,050 Hz). The rest is pure functions: a windowed-sinc resampler to 8 kHz and a G.711 μ-law encoder
(``audioop`` is gone from Python 3.13, so masd carries its own), and the WAV container (format tag 7).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import struct
import subprocess
import tempfile
import wave
from collections.abc import Sequence

__all__ = [
    "DEFAULT_VOICE",
    "SpeechUnavailable",
    "mulaw_decode",
    "mulaw_encode",
    "mulaw_wav",
    "resample",
    "synthesize",
]

DEFAULT_VOICE = "cmn-latn-pinyin"
TELEPHONE_RATE = 8000

_BIAS = 0x84  # G.711 μ-law: added before the segment search so that the segments are powers of two
_CLIP = 32635


class SpeechUnavailable(RuntimeError):
    """Speech could not be made: espeak-ng is missing or failed; the message says which."""


def _mulaw_byte(sample: int) -> int:
    # As the ITU-T G.191 reference does: a negative sample's magnitude is its one's complement, so -1
    # encodes as "negative zero" (0x7F) and the code is symmetric around -0.5.
    sign = 0x80 if sample < 0 else 0
    magnitude = min(~sample if sample < 0 else sample, _CLIP) + _BIAS
    exponent = max(0, (magnitude >> 7).bit_length() - 1)  # the segment: 0..7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


_ENCODE = bytes(_mulaw_byte(s) for s in range(-32768, 32768))


def mulaw_encode(samples: Sequence[int]) -> bytes:
    """16-bit signed linear samples → G.711 μ-law bytes (one byte a sample)."""
    table = _ENCODE
    return bytes(table[s + 32768] for s in samples)


def mulaw_decode(data: bytes) -> list[int]:
    """G.711 μ-law bytes → 16-bit signed linear samples (the value at the middle of each step)."""
    out: list[int] = []
    for byte in data:
        u = ~byte & 0xFF
        exponent = (u >> 4) & 0x07
        magnitude = ((((u & 0x0F) << 3) + _BIAS) << exponent) - _BIAS
        out.append(-magnitude if u & 0x80 else magnitude)
    return out


@functools.lru_cache(maxsize=8)
def _phases(up: int, down: int, half: int) -> tuple[tuple[float, ...], ...]:
    """Filter taps for each of the ``up`` output phases of a ``up/down`` rational resampler: a
    Blackman-windowed sinc low-pass at 0.9 × the lower Nyquist frequency, ``2 × half`` taps."""
    cutoff = 0.9 * min(1.0, up / down) / 2  # cycles per input sample
    phases = []
    for p in range(up):
        frac = (p * down % up) / up  # where the output falls between two input samples
        taps = []
        for k in range(-half + 1, half + 1):
            d = k - frac
            x = d / half
            window = (
                0.42 + 0.5 * math.cos(math.pi * x) + 0.08 * math.cos(2 * math.pi * x) if abs(x) < 1 else 0
            )
            sinc = 1.0 if d == 0 else math.sin(2 * math.pi * cutoff * d) / (2 * math.pi * cutoff * d)
            taps.append(2 * cutoff * sinc * window)
        phases.append(tuple(taps))
    return tuple(phases)


def resample(samples: Sequence[int], src_rate: int, dst_rate: int = TELEPHONE_RATE) -> list[int]:
    """Change the rate of 16-bit samples, low-pass filtered so that nothing above the new Nyquist
    frequency folds back into the speech band."""
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError(f"sample rates must be positive, got {src_rate} and {dst_rate}")
    if src_rate == dst_rate:
        return list(samples)
    g = math.gcd(src_rate, dst_rate)
    up, down = dst_rate // g, src_rate // g
    half = 16
    phases = _phases(up, down, half)
    n_out = len(samples) * up // down
    padded = [0] * half + list(samples) + [0] * (half + 1)
    out: list[int] = []
    for n in range(n_out):
        base = n * down // up  # the input sample at or before this output
        taps = phases[n % up]
        window = padded[base + 1 : base + 1 + 2 * half]
        value = sum(t * x for t, x in zip(taps, window, strict=True))
        out.append(max(-32768, min(32767, round(value))))
    return out


def mulaw_wav(data: bytes, rate: int = TELEPHONE_RATE) -> bytes:
    """A WAV file holding μ-law bytes (WAVE_FORMAT_MULAW = 7, mono, 8 bits a sample)."""
    fmt = struct.pack("<HHIIHHH", 7, 1, rate, rate, 1, 8, 0)  # tag, channels, rate, bytes/s, align, bits, cb
    fact = struct.pack("<I", len(data))
    pad = b"\x00" if len(data) % 2 else b""
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"fact"
        + struct.pack("<I", len(fact))
        + fact
        + b"data"
        + struct.pack("<I", len(data))
        + data
        + pad
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def synthesize(text: str, path: str, *, voice: str = DEFAULT_VOICE, timeout: float = 60.0) -> float:
    """Speak ``text`` into ``path`` as an 8 kHz μ-law WAV; return its length in seconds. Blocking (run
    it in a worker thread). Raises :class:`SpeechUnavailable` if espeak-ng is missing or fails."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SpeechUnavailable("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, pcm_path = tempfile.mkstemp(suffix=".wav", dir=directory)
    os.close(fd)
    try:
        # The text goes on stdin, never on the command line, so nothing in it is read as an option.
        done = subprocess.run(
            [exe, "-v", voice, "-w", pcm_path, "--stdin"],
            input=text.encode("utf-8"),
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            err = done.stderr.decode("utf-8", "replace").strip()
            raise SpeechUnavailable(f"espeak-ng -v {voice} failed (exit {done.returncode}): {err}")
        with wave.open(pcm_path, "rb") as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise SpeechUnavailable("espeak-ng did not write 16-bit mono PCM")
            rate = w.getframerate()
            raw = w.readframes(w.getnframes())
    except subprocess.TimeoutExpired as e:
        raise SpeechUnavailable(f"espeak-ng took longer than {timeout:g}s") from e
    finally:
        os.unlink(pcm_path)
    samples = struct.unpack(f"<{len(raw) // 2}h", raw[: len(raw) // 2 * 2])
    audio = mulaw_encode(resample(samples, rate))
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(mulaw_wav(audio))
    os.replace(tmp, path)
    return len(audio) / TELEPHONE_RATE
