"""Tests of the exercise autograder, minattn.grading.

Each buggy function below is written the way a learner might write it; the
grader must fail it and name the bug.
"""

from __future__ import annotations

import math
import threading
import time

import pytest
import torch

import minattn
from minattn import cost
from minattn.grading import CheckResult, check, check_value, known_names
from minattn.grading.units import explain_ratio

REFERENCE_NAMES = [
    "softmax",
    "scaled_dot_product_attention",
    "patchify",
    "unpatchify",
    "window_partition",
    "window_reverse",
    "cyclic_shift",
    "shifted_window_mask",
    "relative_position_index",
    "split_heads",
    "merge_heads",
    "patch_embed_params",
    "attention_scores",
    "attention_matrix_bytes",
    "windowed_attention_scores",
]


def reference(name):
    return getattr(minattn, name, None) or getattr(cost, name)


def triple(v):
    return (v,) * 3 if isinstance(v, int) else tuple(v)


# ----------------------------------------------------------------------------- learner code with bugs

# softmax


def softmax_last_axis(x, dim=-1):
    e = torch.exp(x - x.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def softmax_no_max(x, dim=-1):
    e = torch.exp(x)
    return e / e.sum(dim=dim, keepdim=True)


def softmax_sum_all(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum()


def softmax_no_keepdim(x, dim=-1):
    e = torch.exp(x - x.amax(dim=dim, keepdim=True))
    return e / e.sum(dim=dim)


def softmax_unnormalised(x, dim=-1):
    return torch.exp(x - x.amax(dim=dim, keepdim=True))


# attention


def make_attention(
    scale_of=lambda q: 1 / math.sqrt(q.shape[-1]), invert_mask=False, stable=True, mask_fill=float("-inf")
):
    def attention(q, k, v, mask=None, bias=None, scale=None, return_weights=False):
        s = scale_of(q) if scale is None else scale
        scores = q @ k.transpose(-2, -1) * s
        if bias is not None:
            scores = scores + bias
        if mask is not None:
            blocked = mask if invert_mask else ~mask
            scores = scores.masked_fill(blocked, mask_fill)
        if stable:
            scores = scores - scores.amax(dim=-1, keepdim=True)
        w = torch.exp(scores)
        w = w / w.sum(dim=-1, keepdim=True)
        out = w @ v
        return (out, w) if return_weights else out

    return attention


def model_width(q):
    heads = q.shape[-3] if q.ndim >= 4 else 1
    return 1 / math.sqrt(heads * q.shape[-1])


attention_unscaled = make_attention(scale_of=lambda q: 1.0)
attention_over_d = make_attention(scale_of=lambda q: 1 / q.shape[-1])
attention_model_width = make_attention(scale_of=model_width)
attention_mask_inverted = make_attention(invert_mask=True)
attention_naive_softmax = make_attention(stable=False)
attention_mask_zero = make_attention(mask_fill=0.0)


# patches


def patchify_channels_last(x, patch_size):
    b, c, d, h, w = x.shape
    p, q, r = triple(patch_size)
    x = x.reshape(b, c, d // p, p, h // q, q, w // r, r)
    x = x.permute(0, 2, 4, 6, 3, 5, 7, 1)  # (B, nD, nH, nW, p, q, r, C): channels last inside the patch
    return x.reshape(b, (d // p) * (h // q) * (w // r), -1)


def patchify_plain_reshape(x, patch_size):
    b, c, d, h, w = x.shape
    p, q, r = triple(patch_size)
    return x.reshape(b, (d // p) * (h // q) * (w // r), c * p * q * r)


def unpatchify_channels_last(tokens, patch_size, grid):
    p, q, r = triple(patch_size)
    gd, gh, gw = grid
    b, _, length = tokens.shape
    c = length // (p * q * r)
    x = tokens.reshape(b, gd, gh, gw, p, q, r, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return x.reshape(b, c, gd * p, gh * q, gw * r)


# windows


def partition_w_slowest(x, window_size):
    b, d, h, w, c = x.shape
    wd, wh, ww = triple(window_size)
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    x = x.permute(0, 5, 3, 1, 2, 4, 6, 7)  # window grid (W, H, D): W slowest
    return x.reshape(-1, wd * wh * ww, c)


def partition_tokens_reversed(x, window_size):
    b, d, h, w, c = x.shape
    wd, wh, ww = triple(window_size)
    x = x.view(b, d // wd, wd, h // wh, wh, w // ww, ww, c)
    x = x.permute(0, 1, 3, 5, 6, 4, 2, 7)  # tokens (ww, wh, wd) inside a window
    return x.reshape(-1, wd * wh * ww, c)


def partition_grid_window_swapped(x, window_size):
    b, d, h, w, c = x.shape
    wd, wh, ww = triple(window_size)
    x = x.view(b, wd, d // wd, wh, h // wh, ww, w // ww, c)  # split as (window, grid)
    x = x.permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(-1, wd * wh * ww, c)


def reverse_w_slowest(windows, window_size, spatial_shape):
    wd, wh, ww = triple(window_size)
    d, h, w = spatial_shape
    c = windows.shape[-1]
    x = windows.view(-1, w // ww, h // wh, d // wd, wd, wh, ww, c)
    x = x.permute(0, 3, 4, 2, 5, 1, 6, 7)
    return x.reshape(-1, d, h, w, c)


def shift_plus(x, shift):
    s = triple(shift)
    return torch.roll(x, shifts=s, dims=(1, 2, 3))


def shift_reversed_axes(x, shift):
    s = triple(shift)
    return torch.roll(x, shifts=(-s[2], -s[1], -s[0]), dims=(1, 2, 3))


def _learner_mask(spatial_shape, window_size, shift, device=None, invert=False):
    window, shift = triple(window_size), triple(shift)
    img = torch.zeros(spatial_shape, dtype=torch.long, device=device)
    count = 0
    slices = [(slice(0, -w), slice(-w, -s), slice(-s, None)) if s else (slice(None),) for w, s in zip(window, shift)]
    for sd in slices[0]:
        for sh in slices[1]:
            for sw in slices[2]:
                img[sd, sh, sw] = count
                count += 1
    labels = minattn.window_partition(img[None, ..., None], window)[..., 0]
    same = labels[:, :, None] == labels[:, None, :]
    return ~same if invert else same


def mask_inverted(spatial_shape, window_size, shift, device=None):
    return _learner_mask(spatial_shape, window_size, shift, device, invert=True)


def mask_float(spatial_shape, window_size, shift, device=None):
    same = _learner_mask(spatial_shape, window_size, shift, device)
    return torch.zeros(same.shape, device=device).masked_fill(~same, -100.0)


# relative position index


def _learner_index(
    window_size, sign=1, strides_from=lambda w: [(2 * w[1] - 1) * (2 * w[2] - 1), 2 * w[2] - 1, 1], device=None
):
    w = triple(window_size)
    coords = torch.stack(torch.meshgrid(*[torch.arange(n, device=device) for n in w], indexing="ij")).flatten(
        1
    )  # (3, N)
    rel = sign * (coords[:, :, None] - coords[:, None, :])  # (3, N, N)
    rel = rel + torch.tensor(w, device=device)[:, None, None] - 1
    strides = strides_from(w)
    return sum(rel[i] * strides[i] for i in range(3))


def index_transposed(window_size, table_window_size=None, device=None):
    return _learner_index(window_size, sign=-1, device=device)


def index_window_strides(window_size, table_window_size=None, device=None):
    return _learner_index(window_size, strides_from=lambda w: [w[1] * w[2], w[2], 1], device=device)


# heads


def split_interleaved(x, num_heads):
    b, n, c = x.shape
    return x.view(b, n, c // num_heads, num_heads).permute(0, 3, 1, 2)


def split_no_transpose(x, num_heads):
    b, n, c = x.shape
    return x.view(b, n, num_heads, c // num_heads)


def merge_interleaved(x):
    b, h, n, d = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, n, h * d)


# cost calculators


def params_without_bias(patch, in_channels, embed_dim):
    return embed_dim * math.prod(triple(patch)) * in_channels


def bytes_as_entries(tokens, dtype=torch.float32, heads=1, batch=1):
    return tokens * tokens * heads * batch


def windows_floor(shape, window):
    w = triple(window)
    n = math.prod(s // x for s, x in zip(shape, w))
    return n * math.prod(w) ** 2


def scores_linear(tokens):
    return tokens


# (reference name, learner function, diagnosis key, keyword the feedback must contain)
BUGGY = [
    ("softmax", softmax_last_axis, "wrong_axis", "wrong axis"),
    ("softmax", softmax_no_max, "no_max_subtraction", "maximum"),
    ("softmax", softmax_sum_all, "sum_over_everything", "whole tensor"),
    ("softmax", softmax_no_keepdim, "missing_keepdim", "keepdim"),
    ("softmax", softmax_unnormalised, "not_normalised", "sum"),
    ("scaled_dot_product_attention", attention_unscaled, "no_scaling", "not scaled"),
    ("scaled_dot_product_attention", attention_over_d, "scale_1_over_d", "instead of sqrt"),
    ("scaled_dot_product_attention", attention_model_width, "scale_model_width", "head width"),
    ("scaled_dot_product_attention", attention_mask_inverted, "mask_inverted", "inverted"),
    ("scaled_dot_product_attention", attention_mask_zero, "mask_zero", "-inf"),
    ("scaled_dot_product_attention", attention_naive_softmax, "no_max_subtraction", "overflow"),
    ("patchify", patchify_channels_last, "channels_last_in_patch", "channel-major"),
    ("patchify", patchify_plain_reshape, "reshape_without_permute", "permut"),
    ("unpatchify", unpatchify_channels_last, "channels_last_in_patch", "channel-major"),
    ("window_partition", partition_w_slowest, "window_order", "w slowest"),
    ("window_partition", partition_tokens_reversed, "token_order", "tokens inside each window"),
    ("window_partition", partition_grid_window_swapped, "strided_windows", "transposed"),
    ("window_reverse", reverse_w_slowest, "window_order", "wrong order"),
    ("cyclic_shift", shift_plus, "roll_direction", "wrong direction"),
    ("cyclic_shift", shift_reversed_axes, "roll_axes_reversed", "wrong axes"),
    ("shifted_window_mask", mask_inverted, "mask_inverted", "inverted"),
    ("relative_position_index", index_transposed, "index_transposed", "transposed"),
    ("relative_position_index", index_window_strides, "strides_from_window", "strides"),
    ("split_heads", split_interleaved, "heads_interleaved", "interleaved"),
    ("split_heads", split_no_transpose, "heads_not_transposed", "(b, h, n, d)"),
    ("merge_heads", merge_interleaved, "heads_interleaved", "interleaved"),
    ("patch_embed_params", params_without_bias, "no_bias", "bias"),
    ("attention_matrix_bytes", bytes_as_entries, "counted_entries", "not bytes"),
    ("windowed_attention_scores", windows_floor, "no_padding", "ceil"),
    ("attention_scores", scores_linear, "not_squared", "n * n"),
]


# ----------------------------------------------------------------------------- the references pass


@pytest.mark.parametrize("name", REFERENCE_NAMES)
def test_reference_passes(name):
    result = check(name, reference(name))
    assert result.passed, result.feedback
    assert result.status == "passed"
    assert "cases passed" in result.feedback


def test_known_names_cover_the_brief():
    assert set(REFERENCE_NAMES) <= set(known_names())


# ----------------------------------------------------------------------------- each bug is failed and named


@pytest.mark.parametrize("name, fn, key, keyword", BUGGY, ids=[f"{name}-{fn.__name__}" for name, fn, _, _ in BUGGY])
def test_bug_is_recognised(name, fn, key, keyword):
    result = check(name, fn)
    assert not result.passed
    assert result.status == "failed", result.feedback
    assert key in result.diagnoses, result.feedback
    assert keyword in result.feedback.lower(), result.feedback
    assert "Likely bug" in result.feedback
    assert "Hint:" in result.feedback


def test_feedback_names_the_case_its_shapes_and_the_difference():
    result = check("softmax", softmax_last_axis)
    assert "case 3 of 7" in result.feedback
    assert "(3, 4, 6)" in result.feedback  # the input's shape
    assert "largest difference" in result.feedback
    assert result.case is not None and "dim=1" in result.case


def test_checks_are_deterministic():
    first = check("window_partition", partition_w_slowest)
    second = check("window_partition", partition_w_slowest)
    assert first.feedback == second.feedback


def test_float_mask_is_a_dtype_problem():
    result = check("shifted_window_mask", mask_float)
    assert result.status == "failed"
    assert "wrong dtype" in result.feedback and "boolean" in result.feedback


# ----------------------------------------------------------------------------- generic problems


def softmax_in_place(x, dim=-1):
    x -= x.amax(dim=dim, keepdim=True)
    x.exp_()
    x /= x.sum(dim=dim, keepdim=True)
    return x


def softmax_float32(x, dim=-1):
    return torch.softmax(x, dim=dim).float()


def softmax_meta(x, dim=-1):
    return torch.softmax(x, dim=dim).to("meta")


def softmax_no_return(x, dim=-1):
    torch.softmax(x, dim=dim)


def softmax_numpy(x, dim=-1):
    return torch.softmax(x, dim=dim).cpu().numpy()


def test_in_place_modification_is_detected():
    result = check("softmax", softmax_in_place)
    assert result.status == "failed"
    assert "modified_input" in result.diagnoses
    assert "in place" in result.feedback
    assert "`x`" in result.feedback


def test_wrong_dtype_is_detected():
    result = check("softmax", softmax_float32)
    assert result.status == "failed"
    assert "wrong dtype" in result.feedback
    assert "expected float64" in result.feedback and "got float32" in result.feedback
    assert "Likely bug" not in result.feedback  # the values are right: nothing else to diagnose


def test_wrong_shape_is_detected():
    result = check("split_heads", lambda x, num_heads: x.unsqueeze(1))
    assert result.status == "failed"
    assert "wrong shape: expected (1, 2, 2, 3), got (1, 1, 2, 6)" in result.feedback
    result = check("merge_heads", lambda x: x.transpose(1, 2))
    assert result.status == "failed"
    assert "wrong shape: expected (1, 3, 4), got (1, 3, 2, 2)" in result.feedback


def test_wrong_device_is_detected():
    result = check("softmax", softmax_meta)
    assert result.status == "failed"
    assert "wrong device" in result.feedback
    assert "meta" in result.feedback


def test_none_and_non_tensor_returns():
    result = check("softmax", softmax_no_return)
    assert result.status == "failed"
    assert "returned None" in result.feedback and "return" in result.feedback
    result = check("softmax", softmax_numpy)
    assert result.status == "failed"
    assert "ndarray" in result.feedback


def _learner_helper(x):
    y = x.sum()
    raise ValueError(f"learner says: the sum was {y.item():.1f} <oops>")


def softmax_raises(x, dim=-1):
    z = x + 1
    return _learner_helper(z)


def softmax_shape_error(x, dim=-1):
    w = torch.ones(7, 7, dtype=x.dtype, device=x.device)
    return x @ w


def test_exception_shows_message_and_short_traceback():
    result = check("softmax", softmax_raises)
    assert result.status == "error"
    assert "learner says: the sum was" in result.feedback
    assert "ValueError" in result.feedback
    assert "Traceback" in result.feedback
    assert "softmax_raises" in result.feedback and "_learner_helper" in result.feedback
    assert "runner.py" not in result.feedback and "threading" not in result.feedback  # grader frames hidden
    frame_lines = [line for line in result.feedback.splitlines() if line.lstrip().startswith(("File ", "Cell In["))]
    assert 1 <= len(frame_lines) <= 4


def test_exception_from_torch_points_at_the_learner_line():
    result = check("softmax", softmax_shape_error)
    assert result.status == "error"
    assert "x @ w" in result.feedback
    assert "RuntimeError" in result.feedback


def test_timeout_on_infinite_loop():
    stop = threading.Event()

    def softmax_forever(x, dim=-1):
        n = 0
        while not stop.is_set():  # an endless loop (the event only guards this test process)
            n += 1
        return x

    threads_before = threading.active_count()
    start = time.monotonic()
    try:
        result = check("softmax", softmax_forever, timeout=1)
        elapsed = time.monotonic() - start
        assert result.status == "timeout"
        assert not result.passed
        assert elapsed < 1 + 2
        assert "did not finish within 1 s" in result.feedback
        assert "loops forever" in result.feedback
        # The grader ends a stuck pure-Python loop on its own.
        assert "stopped" in result.feedback
        deadline = time.monotonic() + 2
        while threading.active_count() > threads_before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert threading.active_count() <= threads_before
    finally:
        stop.set()


def test_not_attempted():
    def softmax_template(x, dim=-1):
        # YOUR CODE HERE
        raise NotImplementedError()

    for fn in (None, softmax_template):
        result = check("softmax", fn)
        assert result.status == "not attempted"
        assert result.passed is False
        assert "Not attempted" in result.feedback


def test_not_implemented_in_a_later_branch_is_an_error():
    def softmax_last_only(x, dim=-1):
        if dim not in (-1, x.ndim - 1):
            raise NotImplementedError("only the last axis so far")
        return torch.softmax(x, dim=-1)

    result = check("softmax", softmax_last_only)
    assert result.status == "error"
    assert "only the last axis so far" in result.feedback


def test_missing_optional_parameters_skip_cases():
    def attention_basic(q, k, v):
        return torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1) @ v

    result = check("scaled_dot_product_attention", attention_basic)
    assert result.passed, result.feedback
    assert "Not tested" in result.feedback and "mask=" in result.feedback


def test_wrong_signature_is_an_error():
    def softmax_without_dim(x):
        return torch.softmax(x, dim=-1)

    result = check("softmax", softmax_without_dim)
    assert result.status == "error"
    assert "softmax(x, dim=-1)" in result.feedback


def test_misuse():
    with pytest.raises(ValueError, match="softmax"):
        check("sofmax", softmax_last_axis)
    result = check("softmax", "not a function")
    assert result.status == "error"
    assert "without calling it" in result.feedback


def test_learner_may_use_any_correct_method():
    def attention_fused(q, k, v, mask=None, bias=None, scale=None, return_weights=False):
        if bias is not None or return_weights:
            return minattn.scaled_dot_product_attention(q, k, v, mask, bias, scale, return_weights)
        return torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)

    assert check("scaled_dot_product_attention", attention_fused).passed
    assert check("attention_scores", lambda n: float(n) ** 2).passed


# ----------------------------------------------------------------------------- display


def test_repr_html_shows_status_and_escapes_learner_text():
    def softmax_script(x, dim=-1):
        raise ValueError("<script>alert('x')</script>")

    result = check("softmax", softmax_script)
    page = result._repr_html_()
    assert "error" in page
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    passed = check("softmax", minattn.softmax)
    assert "passed" in passed._repr_html_()
    assert "#1a7f37" in passed._repr_html_()  # green
    assert "[PASSED] softmax" in str(passed)
    assert "status='passed'" in repr(passed)


def test_result_statuses_are_validated():
    with pytest.raises(ValueError):
        CheckResult("x", "great", "")


def test_in_a_jupyter_kernel():
    """Run All on a fresh notebook: placeholders, an endless loop, an error, and the kernel lives on."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    cells = [
        "from minattn.grading import check\nimport torch",
        "def softmax(x, dim=-1):\n    # YOUR CODE HERE\n    raise NotImplementedError()\ncheck('softmax', softmax)",
        "def softmax(x, dim=-1):\n    while True:\n        pass\ncheck('softmax', softmax, timeout=1)",
        "def softmax(x, dim=-1):\n    return x.exp() / undefined_name\ncheck('softmax', softmax)",
        "check('softmax', lambda x, dim=-1: torch.softmax(x, dim=dim))",
    ]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    html = [
        next(o for o in cell.outputs if o.output_type == "execute_result").data["text/html"] for cell in nb.cells[1:]
    ]
    assert "not attempted" in html[0]
    assert "timeout" in html[1] and "stopped" in html[1]
    assert "error" in html[2] and "Cell In[4]" in html[2] and "undefined_name" in html[2]
    assert "passed" in html[3]


# ----------------------------------------------------------------------------- numeric answers


@pytest.mark.parametrize(
    "name, value",
    [
        ("tokens_256x256x96_p8", 12288),
        ("patch_embed_params_p8_c1_e128", 65664),
        ("tokens_32x64x64", 131072),
        ("scores_32x64x64", 17179869184),
        ("score_matrix_bytes_fp32_32x64x64", 68719476736),
        ("score_matrix_gib_fp32_32x64x64", 64),
        ("score_matrix_gib_fp32_32x64x64", 64.0),
        ("window_saving_128_w8", 4096),
        ("patch_numbers_p8_c1", 512),
    ],
)
def test_check_value_accepts_right_numbers(name, value):
    result = check_value(name, value)
    assert result.passed, result.feedback


def test_check_value_diagnoses_gib_vs_bytes():
    result = check_value("score_matrix_gib_fp32_32x64x64", 68719476736)
    assert result.status == "failed"
    assert "looks like bytes" in result.feedback and "GiB" in result.feedback
    result = check_value("score_matrix_bytes_fp32_32x64x64", 64)
    assert "looks like GiB" in result.feedback


def test_check_value_diagnoses_factor_4():
    result = check_value("score_matrix_bytes_fp32_32x64x64", 17179869184)
    assert result.status == "failed"
    assert "entries_vs_bytes" in result.diagnoses
    assert "4 bytes" in result.feedback


def test_check_value_other_slips():
    assert "bits" in check_value("score_matrix_bytes_fp32_32x64x64", 8 * 68719476736).feedback
    assert "GB" in check_value("score_matrix_gib_fp32_32x64x64", 68.719476736).feedback
    assert "float16" in check_value("score_matrix_bytes_fp32_32x64x64", 68719476736 // 2).feedback
    # two slips at once: entries where GiB of float32 are asked
    assert "two slips" in check_value("score_matrix_gib_fp32_32x64x64", 17179869184).feedback
    assert "square" in check_value("scores_32x64x64", 131072).feedback
    assert explain_ratio(1000, 1) is not None and explain_ratio(1.5, 1) is None


def test_check_value_explicit_expected_blank_and_text():
    assert check_value("my question", 42, expected=42).passed
    assert "looks like MiB" in check_value("my question", 42 * 1024, expected=42, unit_hint="GiB").feedback
    for blank in (None, ...):
        assert check_value("tokens_32x64x64", blank).status == "not attempted"
    text = check_value("score_matrix_gib_fp32_32x64x64", "64 GiB")
    assert text.status == "failed" and "number" in text.feedback
    assert check_value("tokens_32x64x64", torch.tensor(131072)).passed
    with pytest.raises(ValueError, match="tokens_32x64x64"):
        check_value("tokens_32x64x6", 1)


def test_registered_answers_come_from_cost():
    assert check_value("score_matrix_gib_fp32_32x64x64", cost.attention_matrix_bytes(131072) / 2**30).passed
