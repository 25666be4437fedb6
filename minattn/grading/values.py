"""``check_value``: grade a number the learner computed ("how many tokens...?").

The course's numbers are registered by name in :data:`ANSWERS` and computed
from :mod:`minattn.cost`, so they cannot drift from the package. A wrong
answer that is off by a telltale factor (1024**3: bytes vs GiB; 4: entries vs
float32 bytes; ...) gets a sentence naming the slip (:mod:`minattn.grading.units`).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .. import cost
from ..memory import GIB
from .compare import as_number
from .result import CheckResult
from .units import explain_ratio


@dataclass(frozen=True)
class Answer:
    """A registered answer: how to compute it, its unit and the question in words."""

    compute: Callable[[], float]
    unit: str | None
    question: str


def _tokens_32x64x64() -> int:
    return cost.num_tokens((32, 64, 64))


ANSWERS: dict[str, Answer] = {
    "tokens_256x256x96_p8": Answer(
        lambda: cost.num_tokens((256, 256, 96), 8),
        "tokens",
        "tokens from a 256 x 256 x 96 CT cut into 8 x 8 x 8 patches",
    ),
    "patch_numbers_p8_c1": Answer(
        # voxels of an 8^3 volume (one token per voxel) times 1 channel
        lambda: cost.num_tokens((8, 8, 8)) * 1,
        "numbers",
        "numbers in one flattened 8 x 8 x 8 one-channel patch",
    ),
    "patch_embed_params_p8_c1_e128": Answer(
        lambda: cost.patch_embed_params(8, 1, 128),
        "parameters",
        "parameters projecting 8^3 one-channel patches to E = 128",
    ),
    "tokens_32x64x64": Answer(_tokens_32x64x64, "tokens", "tokens of a 32 x 64 x 64 feature map, one per voxel"),
    "scores_32x64x64": Answer(
        lambda: cost.attention_scores(_tokens_32x64x64()),
        "scores",
        "entries of the global score matrix of a 32 x 64 x 64 map",
    ),
    "score_matrix_bytes_fp32_32x64x64": Answer(
        lambda: cost.attention_matrix_bytes(_tokens_32x64x64(), torch.float32),
        "bytes",
        "bytes of the float32 score matrix of a 32 x 64 x 64 map",
    ),
    "score_matrix_gib_fp32_32x64x64": Answer(
        lambda: cost.attention_matrix_bytes(_tokens_32x64x64(), torch.float32) / GIB,
        "GiB",
        "GiB of the float32 score matrix of a 32 x 64 x 64 map",
    ),
    "window_saving_128_w8": Answer(
        lambda: (
            cost.attention_scores(cost.num_tokens((128, 128, 128)))
            // cost.windowed_attention_scores((128, 128, 128), 8)
        ),
        "times",
        "how many times fewer scores 8^3 windows need than global attention on 128^3 tokens",
    ),
    "attention_tflops_32x64x64_d32": Answer(
        lambda: cost.attention_flops(_tokens_32x64x64(), 32) / 1e12,
        "TFLOPs",
        "tera-FLOPs of QK^T and AV for one head of width 32 on a 32 x 64 x 64 map",
    ),
}


def expected_value(name: str) -> float:
    """The registered answer ``name`` (a ``ValueError`` listing the known names otherwise)."""
    if name not in ANSWERS:
        close = difflib.get_close_matches(str(name), ANSWERS, n=1)
        suggestion = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"check_value() knows no answer named {name!r}.{suggestion} Pass expected=... for your own question, "
            f"or use one of: {', '.join(ANSWERS)}."
        )
    return ANSWERS[name].compute()


def _fmt(x) -> str:
    if isinstance(x, int) or (isinstance(x, float) and x.is_integer() and abs(x) < 1e18):
        return f"{int(x):,}"
    return f"{x:.6g}"


def check_value(name: str, value, expected=None, rel_tol: float = 1e-3, unit_hint: str | None = None) -> CheckResult:
    """Check a number the learner computed.

    Args:
        name: a registered answer (see :data:`ANSWERS`), or any label when
            ``expected`` is given.
        value: the learner's number (int, float, numpy or one-element tensor).
            ``None`` or ``...`` (the template's blank) gives "not attempted".
        expected: the right answer, for questions not registered by name.
        rel_tol: relative tolerance; the default 1e-3 accepts a rounded 64.0.
        unit_hint: the unit the question asks for (e.g. ``"GiB"``); defaults
            to the registered answer's. It makes unit slips nameable.

    Returns:
        A :class:`CheckResult` (never raises for a learner's value).

    Raises:
        ValueError: for an unregistered ``name`` without ``expected`` (the
            notebook author's mistake).
    """
    answer = ANSWERS.get(name)
    if expected is None:
        expected = expected_value(name)
    unit = unit_hint if unit_hint is not None else (answer.unit if answer else None)
    question = f" ({answer.question})" if answer else ""
    if value is None or value is Ellipsis:
        return CheckResult(
            name, "not attempted", f"Not attempted yet: put your number in place of the blank{question}."
        )
    number = as_number(value)
    if number is None:
        kind = type(value).__name__
        hint = " Write the number alone, e.g. 64, not '64 GiB'." if isinstance(value, str) else ""
        return CheckResult(name, "failed", f"Your answer should be a number; it is a {kind}: {value!r}.{hint}")
    if not math.isfinite(number):
        return CheckResult(name, "failed", f"Your answer is {number}; it should be a finite number.")
    unit_text = f" {unit}" if unit else ""
    if math.isclose(number, expected, rel_tol=rel_tol, abs_tol=0.0 if expected else rel_tol):
        return CheckResult(name, "passed", f"Correct: {_fmt(number)}{unit_text}{question}.")
    lines = [f"Not quite: your answer is {_fmt(number)}{question}."]
    slip = explain_ratio(number, expected, unit, rel_tol)
    diagnoses = ()
    if slip:
        key, sentence = slip
        lines.append(f"Likely slip: {sentence}.")
        diagnoses = (key,)
    elif expected:
        ratio = number / expected
        if 0 < ratio < 1:
            lines.append(f"It is about {100 * (1 - ratio):.3g}% too small.")
        elif ratio > 1:
            lines.append(f"It is about {ratio:.3g} times the answer: too large.")
        else:
            lines.append("Its sign is wrong.")
        lines.append("  Hint: redo the computation step by step and write the unit of each intermediate number.")
    return CheckResult(name, "failed", "\n".join(lines), diagnoses=diagnoses)
