"""Waveform augmentation for training the command recognizer (16 kHz mono int16).

Every function takes and returns ``int16`` numpy arrays, computes in float64, rounds and
clips to the int16 range at the end (no wraparound), and is deterministic given its inputs
and the ``numpy.random.Generator`` it is handed. Only numpy is needed; scipy, when
installed, speeds up resampling (``resample_poly``) and is imported lazily.

Lengths:
- ``change_speed``: ``round(len(x) / factor)``.
- ``vtlp``, ``pitch_shift``, ``formant_shift``, ``add_noise``, ``reverb``, ``gain``: ``len(x)``.
- ``pad``: ``len(x) + round(pre_s * rate) + round(post_s * rate)``.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Literal

import numpy as np
import numpy.typing as npt

RATE = 16_000

Int16 = npt.NDArray[np.int16]
Float = npt.NDArray[np.float64]
NoiseKind = Literal["white", "pink", "babble"]


def to_int16(y: npt.ArrayLike) -> Int16:
    """Round and clip float samples (int16 scale) to int16, never wrapping around."""
    a = np.asarray(y, dtype=np.float64)
    return np.clip(np.rint(a), -32768, 32767).astype(np.int16)


def _f(x: npt.ArrayLike) -> Float:
    return np.asarray(x, dtype=np.float64).ravel()


def resample(x: npt.ArrayLike, src_rate: int, dst_rate: int) -> Float:
    """Band-limited resampling (polyphase when scipy is there, else FFT). Float out."""
    a = _f(x)
    if src_rate == dst_rate or len(a) == 0:
        return a.copy()
    frac = Fraction(dst_rate, src_rate)
    try:
        from scipy.signal import resample_poly
    except ImportError:
        n = max(1, round(len(a) * dst_rate / src_rate))
        return _fft_resample(a, n)
    out: Float = np.asarray(resample_poly(a, frac.numerator, frac.denominator), dtype=np.float64)
    return out


def _fft_resample(a: Float, n: int) -> Float:
    spec = np.fft.rfft(a)
    keep = min(len(spec), n // 2 + 1)
    out = np.fft.irfft(spec[:keep], n) * (n / len(a))
    return np.asarray(out, dtype=np.float64)


def _stretch_to(a: Float, n: int) -> Float:
    """Resample ``a`` to exactly ``n`` samples (changes pitch and duration together)."""
    if n == len(a):
        return a.copy()
    if n <= 0 or len(a) == 0:
        return np.zeros(max(n, 0), dtype=np.float64)
    g = math.gcd(n, len(a))
    up, down = n // g, len(a) // g
    if up > 1000 or down > 1000:
        # Awkward ratio: approximate it, then fix the length to the sample.
        frac = Fraction(n, len(a)).limit_denominator(400)
        up, down = frac.numerator, frac.denominator
    y = resample(a, down, up) if (up, down) != (1, 1) else a.copy()
    return _fix_length(y, n)


def _fix_length(y: Float, n: int) -> Float:
    if len(y) >= n:
        return y[:n].copy()
    return np.concatenate([y, np.zeros(n - len(y))])


# --------------------------------------------------------------------------- tempo


def _wsola(a: Float, factor: float, frame: int = 512, tolerance: int = 160) -> Float:
    """Waveform-similarity overlap-add: tempo change by ``factor`` (>1 faster), pitch kept."""
    n_out = max(1, round(len(a) / factor))
    hop = frame // 2
    win = np.hanning(frame)
    pad = frame + tolerance + 2
    src = np.concatenate([np.zeros(pad), a, np.zeros(pad + frame + 2 * tolerance)])
    out = np.zeros(n_out + 2 * frame)
    norm = np.zeros(n_out + 2 * frame)
    prev = pad  # where the previously copied frame started in src
    k = 0
    while k * hop < n_out + hop:
        nominal = pad + round(k * hop * factor)
        if k == 0:
            pos = nominal
        else:
            # Most similar segment to the natural continuation of the previous frame.
            target = src[prev + hop : prev + hop + frame]
            lo = max(0, nominal - tolerance)
            region = src[lo : nominal + tolerance + frame]
            corr = np.correlate(region, target, mode="valid")
            pos = lo + int(np.argmax(corr)) if len(corr) else nominal
        seg = src[pos : pos + frame]
        if len(seg) < frame:
            seg = np.concatenate([seg, np.zeros(frame - len(seg))])
        start = k * hop
        out[start : start + frame] += seg * win
        norm[start : start + frame] += win
        prev = pos
        k += 1
    y = out / np.maximum(norm, 1e-3)
    return _fix_length(y, n_out)


def _tempo(a: Float, factor: float) -> Float:
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    if abs(factor - 1.0) < 1e-6 or len(a) == 0:
        return a.copy()
    return _wsola(a, factor)


def change_speed(x: Int16, factor: float) -> Int16:
    """Tempo change keeping pitch: ``factor`` 1.2 is 20 % faster (output ``len/1.2``)."""
    return to_int16(_tempo(_f(x), factor))


# --------------------------------------------------------------------------- spectrum


def vtlp(x: Int16, alpha: float) -> Int16:
    """Vocal tract length perturbation: every frequency times ``alpha`` (0.85..1.15).

    Resample (formants and pitch move by ``alpha``), then restore the duration with a
    pitch-keeping tempo change. Length is unchanged.
    """
    if alpha <= 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    a = _f(x)
    if len(a) == 0 or abs(alpha - 1.0) < 1e-6:
        return x.astype(np.int16, copy=True)
    shorter = _stretch_to(a, max(1, round(len(a) / alpha)))  # played faster: f * alpha
    back = _tempo(shorter, len(shorter) / len(a))
    return to_int16(_fix_length(back, len(a)))


def _stft(a: Float, n_fft: int, hop: int) -> tuple[npt.NDArray[np.complex128], Float]:
    win = np.hanning(n_fft + 1)[:-1]
    padded = np.concatenate([np.zeros(n_fft), a, np.zeros(n_fft)])
    n_frames = 1 + (len(padded) - n_fft) // hop
    idx = np.arange(n_fft)[None, :] + hop * np.arange(n_frames)[:, None]
    frames = padded[idx] * win
    return np.fft.rfft(frames, axis=1), win


def _istft(spec: npt.NDArray[np.complex128], win: Float, hop: int, n: int) -> Float:
    n_fft = len(win)
    frames = np.fft.irfft(spec, n_fft, axis=1) * win
    total = n_fft + hop * (len(frames) - 1)
    out = np.zeros(total)
    norm = np.zeros(total)
    for i, fr in enumerate(frames):
        out[i * hop : i * hop + n_fft] += fr
        norm[i * hop : i * hop + n_fft] += win * win
    y = out / np.maximum(norm, 1e-8)
    return _fix_length(y[n_fft:], n)


def _envelope_warp(a: Float, alpha: float, lifter: int = 24, max_db: float = 24.0) -> Float:
    """Move the spectral envelope (formants) by ``alpha``; harmonics (pitch) stay put.

    Per STFT frame: cepstrally smoothed log envelope E(f); multiply by E(f/alpha)/E(f).
    """
    if len(a) == 0 or abs(alpha - 1.0) < 1e-6:
        return a.copy()
    n_fft, hop = 512, 128
    spec, win = _stft(a, n_fft, hop)
    logmag = np.log(np.abs(spec) + 1e-6)
    ceps = np.fft.irfft(logmag, n_fft, axis=1)
    ceps[:, lifter : n_fft - lifter + 1] = 0.0
    env = np.fft.rfft(ceps, n_fft, axis=1).real
    bins = np.arange(env.shape[1], dtype=np.float64)
    src_bins = np.clip(bins / alpha, 0, env.shape[1] - 1)
    warped = np.empty_like(env)
    for i in range(env.shape[0]):
        warped[i] = np.interp(src_bins, bins, env[i])
    limit = max_db / 20.0 * math.log(10.0)
    ratio = np.exp(np.clip(warped - env, -limit, limit))
    y = _istft(spec * ratio, win, hop, len(a))
    # Keep the loudness of the input.
    rms_in = float(np.sqrt(np.mean(a * a)))
    rms_out = float(np.sqrt(np.mean(y * y)))
    if rms_out > 0:
        y *= rms_in / rms_out
    return y


def formant_shift(x: Int16, alpha: float) -> Int16:
    """Formants (spectral envelope) times ``alpha``; pitch and length unchanged."""
    return to_int16(_envelope_warp(_f(x), alpha))


def pitch_shift(x: Int16, semitones: float) -> Int16:
    """Pitch by ``semitones`` with formants and length kept (vtlp, then envelope moved back)."""
    ratio = 2.0 ** (semitones / 12.0)
    if abs(ratio - 1.0) < 1e-6 or len(x) == 0:
        return x.astype(np.int16, copy=True)
    a = _f(x)
    shorter = _stretch_to(a, max(1, round(len(a) / ratio)))
    both = _fix_length(_tempo(shorter, len(shorter) / len(a)), len(a))
    return to_int16(_envelope_warp(both, 1.0 / ratio))


# --------------------------------------------------------------------------- noise


def _power(a: Float) -> float:
    """Mean power of the active part (10 ms frames within 40 dB of the loudest)."""
    if len(a) == 0:
        return 0.0
    f = 160
    n = len(a) // f
    if n == 0:
        return float(np.mean(a * a))
    fp = np.mean(a[: n * f].reshape(n, f) ** 2, axis=1)
    top = float(fp.max())
    if top <= 0:
        return 0.0
    return float(fp[fp >= top * 1e-4].mean())


def _pink(n: int, rng: np.random.Generator) -> Float:
    white = rng.standard_normal(n)
    spec = np.fft.rfft(white)
    f = np.arange(len(spec), dtype=np.float64)
    f[0] = 1.0
    spec /= np.sqrt(f)
    spec[0] = 0.0
    return np.asarray(np.fft.irfft(spec, n), dtype=np.float64)


def _babble(n: int, rng: np.random.Generator, source: Int16 | None, talkers: int = 6) -> Float:
    out = np.zeros(n)
    if source is not None and len(source) > 0:
        src = _f(source)
        for _ in range(talkers):
            start = int(rng.integers(len(src)))
            idx = (start + np.arange(n)) % len(src)
            seg = src[idx]
            p = _power(seg)
            if p > 0:
                out += seg / math.sqrt(p)
        return out
    # No source: speech-shaped noise with syllable-rate (2-6 Hz) loudness changes per talker.
    t = np.arange(n) / RATE
    for _ in range(talkers):
        base = _pink(n, rng)
        rate = rng.uniform(2.0, 6.0)
        phase = rng.uniform(0, 2 * math.pi)
        env = np.clip(np.sin(2 * math.pi * rate * t + phase), 0, None) ** 2
        out += base * env
    return out


def add_noise(
    x: Int16,
    snr_db: float,
    rng: np.random.Generator,
    kind: NoiseKind | str = "white",
    babble_source: Int16 | None = None,
) -> Int16:
    """Add noise at ``snr_db`` relative to the power of the active part of ``x``.

    ``babble``: sum of 6 randomly offset (looped) copies of ``babble_source`` (speech from
    other voices), or, without a source, 6 syllable-rate modulated pink-noise "talkers".
    A silent ``x`` gets no noise (there is no level to refer to): use ``pad`` first.
    """
    a = _f(x)
    n = len(a)
    if n == 0:
        return x.astype(np.int16, copy=True)
    if kind == "white":
        noise = rng.standard_normal(n)
    elif kind == "pink":
        noise = _pink(n, rng)
    elif kind == "babble":
        noise = _babble(n, rng, babble_source)
    else:
        raise ValueError(f"unknown noise kind {kind!r} (white, pink, babble)")
    ps = _power(a)
    pn = float(np.mean(noise * noise))
    if ps <= 0 or pn <= 0:
        return x.astype(np.int16, copy=True)
    noise *= math.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return to_int16(a + noise)


def reverb(x: Int16, rt60_s: float, rng: np.random.Generator) -> Int16:
    """Room reverberation: synthetic impulse response (direct path + exponentially decaying
    noise tail after a few ms, 60 dB down at ``rt60_s``). Length and RMS level kept."""
    a = _f(x)
    if len(a) == 0 or rt60_s <= 0:
        return x.astype(np.int16, copy=True)
    n_ir = max(2, round(rt60_s * RATE))
    t = np.arange(n_ir) / RATE
    tail = rng.standard_normal(n_ir) * np.exp(-3.0 * math.log(10.0) * t / rt60_s)
    predelay = int(rng.integers(int(0.002 * RATE), int(0.008 * RATE) + 1))
    tail[:predelay] = 0.0
    # Direct-to-reverberant energy ratio from about +3 dB (small room) to -6 dB (hall).
    drr_db = 3.0 - 9.0 * min(1.0, rt60_s / 1.0) + float(rng.uniform(-1.5, 1.5))
    e_tail = float(np.sum(tail * tail))
    if e_tail > 0:
        tail *= math.sqrt(1.0 / (e_tail * 10.0 ** (drr_db / 10.0)))
    ir = tail
    ir[0] = 1.0
    size = 1 << math.ceil(math.log2(len(a) + n_ir))
    y = np.fft.irfft(np.fft.rfft(a, size) * np.fft.rfft(ir, size), size)[: len(a)]
    rms_in = float(np.sqrt(np.mean(a * a)))
    rms_out = float(np.sqrt(np.mean(y * y)))
    if rms_out > 0:
        y *= rms_in / rms_out
    return to_int16(y)


def gain(x: Int16, db: float) -> Int16:
    """Scale by ``db`` decibels; clips (saturates) at the int16 limits."""
    return to_int16(_f(x) * 10.0 ** (db / 20.0))


def pad(
    x: Int16,
    rng: np.random.Generator,
    pre_s: float = 0.25,
    post_s: float = 0.25,
    noise_db: float = -60.0,
) -> Int16:
    """Lead-in and tail as a VAD would cut a segment: ``pre_s`` / ``post_s`` seconds of
    low-level white noise at ``noise_db`` dBFS (RMS) before and after ``x``."""
    pre = max(0, round(pre_s * RATE))
    post = max(0, round(post_s * RATE))
    level = 32768.0 * 10.0 ** (noise_db / 20.0)
    before = rng.standard_normal(pre) * level
    after = rng.standard_normal(post) * level
    return to_int16(np.concatenate([before, _f(x), after]))
