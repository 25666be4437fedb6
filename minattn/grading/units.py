"""Recognising unit slips in a number: off by 1024, 1000, 8, 4 or 2, or a square.

Which slips are looked for depends on the unit the question asks for, so the
feedback never speaks of bytes or FLOPs where the answer has neither:

* sizes in memory (bytes, KiB, GB, ...): an exact power of 1024 away is the
  wrong binary unit (bytes vs GiB); 1000 the wrong decimal one; 1.024**k
  decimal vs binary; 8 bits vs bytes; 4 entries vs bytes of float32; 2 float16
  vs float32; and two of these at once (entries where GiB of float32 were
  asked: a factor 1024**3 / 4);
* operation counts (FLOPs, TFLOPs, ...): a power of 1000 (FLOPs vs TFLOPs) and
  a factor 2 (a multiply-add counted as one operation or two);
* other counts (tokens, scores, parameters, ...): a forgotten or extra square;
* no unit (a probability, a ratio): nothing.
"""

from __future__ import annotations

import math

BINARY = ("bytes", "KiB", "MiB", "GiB", "TiB")
DECIMAL = ("bytes", "kB", "MB", "GB", "TB")
FLOPS = ("FLOPs", "kFLOPs", "MFLOPs", "GFLOPs", "TFLOPs")
_BYTE_UNITS = {u.lower() for u in BINARY + DECIMAL} | {"byte", "b"}
_POWER_NAMES = {1: "thousand", 2: "million", 3: "billion", 4: "trillion"}


def _is_bytes_unit(unit: str | None) -> bool:
    return unit is not None and unit.strip().lower() in _BYTE_UNITS


def _is_flops_unit(unit: str | None) -> bool:
    return unit is not None and unit.strip().lower() in {u.lower() for u in FLOPS}


def _ladder_index(unit: str | None, ladder) -> int | None:
    if unit is None:
        return None
    lowered = [u.lower() for u in ladder]
    key = unit.strip().lower()
    if key in ("byte", "b"):
        key = "bytes"
    return lowered.index(key) if key in lowered else None


def _ladder_slip(k: int, too_big: bool, unit: str | None, ladder, base: int, explanation: str) -> str:
    """Feedback for an answer off by ``base**k``: name the unit it looks like when ``unit`` is on ``ladder``."""
    factor = f"{base}**{k}" if k > 1 else str(base)
    i = _ladder_index(unit, ladder)
    if i is not None:
        j = i - k if too_big else i + k
        if 0 <= j < len(ladder):
            fix = "divide by" if too_big else "multiply by"
            return f"it looks like {ladder[j]}, but the question asks for {unit}: {fix} {factor}"
    direction = "too large" if too_big else "too small"
    return explanation.format(factor=factor, direction=direction)


def _binary(k: int, too_big: bool, unit: str | None) -> str:
    return _ladder_slip(
        k, too_big, unit, BINARY, 1024,
        f"it is exactly {{factor}} (2**{10 * k}) times {{direction}}: "
        "a binary unit slip (bytes, KiB, MiB, GiB differ by 1024 each)",
    )


def _decimal(k: int, too_big: bool, unit: str | None) -> str:
    return _ladder_slip(
        k, too_big, unit, FLOPS if _is_flops_unit(unit) else DECIMAL, 1000,
        f"it is exactly {{factor}} times {{direction}}: a {_POWER_NAMES[k]}s slip "
        "(check the unit: e.g. FLOPs vs TFLOPs, bytes vs GB)",
    )


def _si_vs_binary(k: int, too_big: bool, unit: str | None) -> str:
    si, binary = DECIMAL[k], BINARY[k]
    if too_big:
        return (
            f"it looks like decimal {si} (1000**{k} bytes) where binary {binary} (1024**{k} bytes) is asked: "
            f"divide the bytes by 1024**{k}, not 1000**{k}"
        )
    return (
        f"it looks like binary {binary} (1024**{k} bytes) where decimal {si} (1000**{k} bytes) is asked: "
        f"divide the bytes by 1000**{k}, not 1024**{k}"
    )


def _bits(too_big: bool, unit: str | None) -> str:
    if too_big:
        return "it is 8 times too large: it looks like bits, but the question asks for bytes (a byte has 8 bits)"
    return "it is 8 times too small: it looks like you divided by 8 (bytes vs bits, or 1 byte per number instead of 8)"


def _four(too_big: bool, unit: str | None) -> str:
    if too_big:
        return (
            "it is 4 times too large: it looks like bytes of float32 (4 bytes per number), but the question counts "
            "numbers (entries), not bytes"
        )
    if _is_bytes_unit(unit) or unit is None:
        return (
            "it is 4 times too small: it looks like the number of entries (elements); each float32 number takes "
            "4 bytes, so multiply by 4"
        )
    return "it is exactly 4 times too small"


def _two(too_big: bool, unit: str | None) -> str:
    if too_big:
        return (
            "it is twice the answer: e.g. 8 bytes per number (float64) where 4 (float32) are asked, or 4 where 2 "
            "(float16); or multiply-adds counted as 2 FLOPs where 1 is asked"
        )
    return (
        "it is half the answer: e.g. 2 bytes per number (float16) where float32 takes 4, or pairs counted once "
        "where both orders count"
    )


def _multiply_adds(too_big: bool, unit: str | None) -> str:
    if too_big:
        return "it is twice the answer: a multiply-add was counted as 2 FLOPs, or a product counted twice"
    return "it is half the answer: each multiply-add counts as 2 FLOPs (a multiply and an add)"


def _candidates(unit: str | None):
    """(factor, key, explain(too_big, unit)) in the order they are tried; none for a unit without slips."""
    out = []
    if _is_flops_unit(unit):
        for k in (1, 2, 3, 4):
            out.append((1000.0**k, f"decimal_{k}", lambda big, u, k=k: _decimal(k, big, u)))
        out.append((2.0, "multiply_adds", _multiply_adds))
        return out
    if not _is_bytes_unit(unit):
        return out
    for k in (1, 2, 3, 4):
        out.append((1024.0**k, f"binary_{k}", lambda big, u, k=k: _binary(k, big, u)))
    for k in (1, 2, 3, 4):
        out.append((1000.0**k, f"decimal_{k}", lambda big, u, k=k: _decimal(k, big, u)))
    for k in (1, 2, 3, 4):
        out.append(((1024 / 1000) ** k, f"si_vs_binary_{k}", lambda big, u, k=k: _si_vs_binary(k, big, u)))
    out.append((8.0, "bits_vs_bytes", _bits))
    out.append((4.0, "entries_vs_bytes", _four))
    out.append((2.0, "fp16_vs_fp32", _two))
    return out


def _near(ratio: float, factor: float, rel_tol: float) -> bool:
    return abs(ratio / factor - 1.0) <= rel_tol


def explain_ratio(value: float, expected: float, unit: str | None = None, rel_tol: float = 1e-3):
    """Recognise a unit slip: return ``(key, sentence)`` or None.

    ``unit`` is the unit the question asks for (e.g. ``"GiB"``); it decides
    which slips are possible (none without a unit) and lets the sentence name
    the unit the value seems to be in ("it looks like bytes, but the question
    asks for GiB").
    """
    if unit is None:
        return None
    try:
        value, expected = float(value), float(expected)
    except (TypeError, ValueError):
        return None
    if value == 0 or expected == 0 or math.isnan(value) or math.isnan(expected):
        return None
    if (value < 0) != (expected < 0):
        return None
    ratio = abs(value / expected)
    too_big = ratio > 1
    size = ratio if too_big else 1 / ratio
    candidates = _candidates(unit)
    for factor, key, explain in candidates:
        if _near(size, factor, rel_tol):
            return key, explain(too_big, unit)
    if value > 1 and expected > 1 and _near(value * value, expected, rel_tol):
        return "not_squared", "it is the square root of the answer: did you forget to square (N^2 pairs, not N)?"
    if _near(value, expected * expected, rel_tol) and abs(expected) > 1:
        return "squared", "it is the square of the answer: something was squared that should not be"
    # Two slips at once: a unit factor times an element-size factor, each either way.
    units = [c for c in candidates if c[1].startswith(("binary", "decimal"))]
    sizes = [c for c in candidates if c[1] in ("bits_vs_bytes", "entries_vs_bytes", "fp16_vs_fp32")]
    for u_factor, u_key, u_explain in units:
        for s_factor, s_key, s_explain in sizes:
            for u_big in (True, False):
                for s_big in (True, False):
                    combined = (u_factor if u_big else 1 / u_factor) * (s_factor if s_big else 1 / s_factor)
                    if _near(ratio, combined, rel_tol):
                        return (
                            f"{u_key}+{s_key}",
                            f"two slips at once: {u_explain(u_big, unit)}; and {s_explain(s_big, unit)}",
                        )
    return None
