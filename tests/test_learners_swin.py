"""Learners' answers to the Swin block exercises (exercises 08), right and wrong, with the verdict each must get."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from einops import rearrange
from learners import Attempt, assert_verdict
from monai.networks.nets.swin_unetr import WindowAttention as MonaiWindowAttention

import minattn
from minattn._fused import ChunkedWindowAttention

# ----------------------------------------------------------------------------- window attention, right


def attention_explicit(attn, x, mask=None):
    """The solution's way: chunk, split_heads, explicit scores, masked_fill on (B, nW, h, N, N), minattn.softmax."""
    windows, n, c = x.shape
    q, k, v = attn.qkv(x).chunk(3, dim=-1)
    q, k, v = (minattn.split_heads(t, attn.num_heads) for t in (q, k, v))
    scores = (q * (c // attn.num_heads) ** -0.5) @ k.transpose(-2, -1) + attn.position_bias()
    if mask is not None:
        scores = scores.view(-1, mask.shape[0], attn.num_heads, n, n)
        scores = scores.masked_fill(~mask[None, :, None], float("-inf")).view(windows, attn.num_heads, n, n)
    return attn.proj(minattn.merge_heads(minattn.softmax(scores, dim=-1) @ v))


def attention_lesson(attn, x, mask=None):
    """The lesson's way: minattn.scaled_dot_product_attention with the windows grouped per volume."""
    heads = attn.num_heads
    q, k, v = (minattn.split_heads(t, heads) for t in attn.qkv(x).chunk(3, dim=-1))
    bias = attn.position_bias()
    if mask is None:
        out = minattn.scaled_dot_product_attention(q, k, v, bias=bias, scale=attn.scale)
    else:
        nw = mask.shape[0]
        q, k, v = (t.reshape(-1, nw, *t.shape[1:]) for t in (q, k, v))
        out = minattn.scaled_dot_product_attention(q, k, v, mask=mask[None, :, None], bias=bias, scale=attn.scale)
        out = out.reshape(-1, *out.shape[2:])
    return attn.proj(minattn.merge_heads(out))


def attention_einops_table(attn, x, mask=None):
    """einops for the layout, the bias looked up in the table by hand, the mask tiled with repeat, torch.softmax."""
    windows, n, c = x.shape
    heads = attn.num_heads
    q, k, v = rearrange(attn.qkv(x), "b n (three h d) -> three b h n d", three=3, h=heads)
    scores = torch.einsum("bhid,bhjd->bhij", q, k) / math.sqrt(c // heads)
    table, index = attn.position_bias.table, attn.position_bias.index
    scores = scores + rearrange(table[index.reshape(-1)], "(i j) h -> h i j", i=n)
    if mask is not None:
        tiled = mask.repeat(windows // mask.shape[0], 1, 1)  # window i of every volume gets mask i
        scores = scores.masked_fill(~tiled[:, None], float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return attn.proj(rearrange(torch.einsum("bhij,bhjd->bhid", weights, v), "b h n d -> b n (h d)"))


def attention_float64_inside(attn, x, mask=None):
    """Everything in float64 (weights cast too), the mask as an additive -inf tensor, F.linear."""
    windows, n, c = x.shape
    heads = attn.num_heads
    x64 = x.double()
    w, b = attn.qkv.weight.double(), None if attn.qkv.bias is None else attn.qkv.bias.double()
    qkv = F.linear(x64, w, b).reshape(windows, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv[0], qkv[1], qkv[2]
    scores = q @ k.transpose(-2, -1) * attn.scale + attn.position_bias().double()
    if mask is not None:
        additive = torch.zeros(mask.shape, dtype=torch.float64, device=x.device).masked_fill(~mask, float("-inf"))
        scores = (scores.view(-1, mask.shape[0], heads, n, n) + additive[None, :, None]).view(windows, heads, n, n)
    weights = torch.exp(scores - scores.amax(-1, keepdim=True))
    weights = weights / weights.sum(-1, keepdim=True)
    out = (weights @ v).transpose(1, 2).reshape(windows, n, c)
    return F.linear(out, attn.proj.weight.double(), attn.proj.bias.double()).to(x.dtype)


def attention_torch_sdpa(attn, x, mask=None):
    """PyTorch's fused attention as the core (an earlier lesson's piece), bias and mask as one additive tensor."""
    windows, n, c = x.shape
    heads = attn.num_heads
    q, k, v = rearrange(attn.qkv(x), "b n (three h d) -> three b h n d", three=3, h=heads)
    additive = attn.position_bias().to(x.dtype)[None]  # (1, h, N, N)
    if mask is not None:
        blocked = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, float("-inf"))
        additive = additive + blocked.repeat(windows // mask.shape[0], 1, 1)[:, None]
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=additive, scale=attn.scale)
    return attn.proj(rearrange(out, "b h n d -> b n (h d)"))


# ----------------------------------------------------------------------------- window attention, wrong


def _scores_and_values(attn, x, scale):
    q, k, v = rearrange(attn.qkv(x), "b n (three h d) -> three b h n d", three=3, h=attn.num_heads)
    return (q * scale) @ k.transpose(-2, -1), v


def _finish(attn, scores, v, mask, windows, n, tile="repeat", invert=False):
    if mask is not None:
        reps = windows // mask.shape[0]
        tiled = mask.repeat(reps, 1, 1) if tile == "repeat" else mask.repeat_interleave(reps, dim=0)
        blocked = tiled if invert else ~tiled
        scores = scores.masked_fill(blocked[:, None], float("-inf"))
    return attn.proj(rearrange(minattn.softmax(scores, dim=-1) @ v, "b h n d -> b n (h d)"))


def attention_model_scale(attn, x, mask=None):
    windows, n, c = x.shape
    scores, v = _scores_and_values(attn, x, c**-0.5)
    return _finish(attn, scores + attn.position_bias(), v, mask, windows, n)


def attention_no_bias(attn, x, mask=None):
    windows, n, c = x.shape
    scores, v = _scores_and_values(attn, x, attn.scale)
    return _finish(attn, scores, v, mask, windows, n)


def attention_bias_transposed(attn, x, mask=None):
    windows, n, c = x.shape
    scores, v = _scores_and_values(attn, x, attn.scale)
    table, index = attn.position_bias.table, attn.position_bias.index
    bias = table[index].permute(2, 1, 0)
    return _finish(attn, scores + bias, v, mask, windows, n)


def attention_interleaved_masks(attn, x, mask=None):
    windows, n, c = x.shape
    scores, v = _scores_and_values(attn, x, attn.scale)
    return _finish(attn, scores + attn.position_bias(), v, mask, windows, n, tile="interleave")


def attention_inverted_mask(attn, x, mask=None):
    windows, n, c = x.shape
    scores, v = _scores_and_values(attn, x, attn.scale)
    return _finish(attn, scores + attn.position_bias(), v, mask, windows, n, invert=True)


def attention_no_proj(attn, x, mask=None):
    windows, n, c = x.shape
    scores, v = _scores_and_values(attn, x, attn.scale)
    scores = scores + attn.position_bias()
    if mask is not None:
        scores = scores.masked_fill(~mask.repeat(windows // mask.shape[0], 1, 1)[:, None], float("-inf"))
    return rearrange(minattn.softmax(scores, dim=-1) @ v, "b h n d -> b n (h d)")


def attention_qkv_per_head(attn, x, mask=None):
    windows, n, c = x.shape
    q, k, v = rearrange(attn.qkv(x), "b n (h three d) -> three b h n d", three=3, h=attn.num_heads)
    scores = (q * attn.scale) @ k.transpose(-2, -1) + attn.position_bias()
    return _finish(attn, scores, v, mask, windows, n)


def attention_no_mask_parameter(attn, x):
    return attention_explicit(attn, x)


def attention_returns_input(attn, x, mask=None):
    return x.clone()


def attention_package(attn, x, mask=None):
    return attn(x, mask=mask)


def attention_attend(attn, x, mask=None):
    return attn.attend(x, attn.position_bias(), mask)


def attention_chunked_kernel(attn, x, mask=None):
    """The package's training kernel, called directly on the learner's own q, k, v."""
    windows, n, _ = x.shape
    q, k, v = rearrange(attn.qkv(x), "b n (three h d) -> three b h n d", three=3, h=attn.num_heads)
    per_volume = 1 if mask is None else mask.shape[0]
    q, k, v = (t.reshape(windows // per_volume, per_volume, attn.num_heads, n, -1) for t in (q, k, v))
    additive = None
    if mask is not None:
        additive = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, float("-inf"))
    bias = attn.position_bias().to(x.dtype)
    out = ChunkedWindowAttention.apply(q * attn.scale, k, v, bias, additive)
    return attn.proj(rearrange(out.reshape(windows, attn.num_heads, n, -1), "b h n d -> b n (h d)"))


def attention_monai(attn, x, mask=None):
    theirs = MonaiWindowAttention(attn.dim, attn.window_size, attn.num_heads, qkv_bias=attn.qkv.bias is not None)
    theirs = theirs.to(x.device, x.dtype)
    with torch.no_grad():
        theirs.qkv.load_state_dict(attn.qkv.state_dict())
        theirs.proj.load_state_dict(attn.proj.state_dict())
        theirs.relative_position_bias_table.copy_(attn.position_bias.table)
    additive = None
    if mask is not None:
        additive = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).masked_fill(~mask, -100.0)
    return theirs(x, additive)


# ----------------------------------------------------------------------------- the block


def block_solution(block, x, attention=attention_explicit):
    window, shift = block.window_size, block.shift_size
    grid = tuple(x.shape[1:4])
    h = block.norm1(x)
    mask = None
    if any(shift):
        h = minattn.cyclic_shift(h, shift)
        mask = minattn.shifted_window_mask(grid, window, shift, device=x.device)
    h = minattn.window_reverse(attention(block.attn, minattn.window_partition(h, window), mask), window, grid)
    if any(shift):
        h = minattn.cyclic_shift(h, tuple(-s for s in shift))
    x = x + h
    return x + block.mlp(block.norm2(x))


def block_roll_einops(block, x):
    """torch.roll and einops instead of minattn's window functions; the lesson's scaled_dot_product_attention."""
    (wd, wh, ww), shift = block.window_size, block.shift_size
    b, d, h, w, c = x.shape
    y = block.norm1(x)
    mask = None
    if any(shift):
        y = torch.roll(y, shifts=tuple(-s for s in shift), dims=(1, 2, 3))
        mask = minattn.windows.WindowLayout((d, h, w), block.window_size, shift).mask(x.device)
    windows = rearrange(y, "b (d p) (h q) (w r) c -> (b d h w) (p q r) c", p=wd, q=wh, r=ww)
    windows = attention_lesson(block.attn, windows, mask)
    y = rearrange(windows, "(b d h w) (p q r) c -> b (d p) (h q) (w r) c", b=b, d=d // wd, h=h // wh, p=wd, q=wh)
    if any(shift):
        y = torch.roll(y, shifts=shift, dims=(1, 2, 3))
    x = x + y
    return x + block.mlp.fc2(F.gelu(block.mlp.fc1(block.norm2(x))))


def block_float64_inside(block, x):
    """The block's arithmetic in float64 on a float64 copy of it, the result cast back."""
    import copy

    twin = copy.deepcopy(block).double()
    return block_solution(twin, x.double(), attention=attention_einops_table).to(x.dtype)


def attention_branch(block, h, roll_back=True, direction=1, use_mask=True):
    """The attention sub-layer on an (already normalised or not) grid h, with a learner's slips as switches."""
    window, shift = block.window_size, block.shift_size
    grid = tuple(h.shape[1:4])
    mask = None
    if any(shift):
        h = torch.roll(h, shifts=tuple(-direction * s for s in shift), dims=(1, 2, 3))
        if use_mask:
            mask = minattn.shifted_window_mask(grid, window, shift, device=h.device)
    h = minattn.window_reverse(attention_explicit(block.attn, minattn.window_partition(h, window), mask), window, grid)
    if any(shift) and roll_back:
        h = torch.roll(h, shifts=tuple(direction * s for s in shift), dims=(1, 2, 3))
    return h


def block_no_roll_back(block, x):
    x = x + attention_branch(block, block.norm1(x), roll_back=False)
    return x + block.mlp(block.norm2(x))


def block_roll_plus(block, x):
    x = x + attention_branch(block, block.norm1(x), direction=-1)
    return x + block.mlp(block.norm2(x))


def block_no_mask(block, x):
    x = x + attention_branch(block, block.norm1(x), use_mask=False)
    return x + block.mlp(block.norm2(x))


def block_post_norm(block, x):
    x = block.norm1(x + attention_branch(block, x))
    return block.norm2(x + block.mlp(x))


def block_parallel(block, x):
    return x + attention_branch(block, block.norm1(x)) + block.mlp(block.norm2(x))


def block_norm1_twice(block, x):
    x = x + attention_branch(block, block.norm1(x))
    return x + block.mlp(block.norm1(x))


def block_no_mlp_residual(block, x):
    x = x + attention_branch(block, block.norm1(x))
    return block.mlp(block.norm2(x))


def block_identity(block, x):
    return x.clone()


def block_package(block, x):
    return block(x)


def block_package_attention(block, x):
    """The old exercise's way: block.attn(windows, mask=...), now ruled out."""
    return block_solution(block, x, attention=lambda attn, w, mask: attn(w, mask=mask))


def block_shifted_window_attention(block, x):
    x = x + minattn.shifted_window_attention(block.norm1(x), block.attn, block.shift_size)
    return x + block.mlp(block.norm2(x))


# ----------------------------------------------------------------------------- values

C, HEADS, WINDOW = 48, 3, 7


def block_params_by_formula():
    norms = 2 * 2 * C
    qkv = 3 * C * C + 3 * C
    proj = C * C + C
    table = (2 * WINDOW - 1) ** 3 * HEADS
    mlp = (C * 4 * C + 4 * C) + (4 * C * C + C)
    return norms + qkv + proj + table + mlp


ATTEMPTS = [
    # window_attention_forward
    Attempt("window_attention_forward", "explicit scores, minattn.softmax", attention_explicit, "right"),
    Attempt("window_attention_forward", "the lesson's scaled_dot_product_attention", attention_lesson, "right"),
    Attempt("window_attention_forward", "einops, einsum, table lookup, mask.repeat", attention_einops_table, "right"),
    Attempt("window_attention_forward", "float64 inside, F.linear, cast back", attention_float64_inside, "right"),
    Attempt("window_attention_forward", "PyTorch's fused attention as the core", attention_torch_sdpa, "right"),
    Attempt("window_attention_forward", "scaled by C**-0.5", attention_model_scale, "bug", names="scale_model_width"),
    Attempt("window_attention_forward", "no position bias", attention_no_bias, "bug", names="no_position_bias"),
    Attempt(
        "window_attention_forward",
        "bias permuted (2, 1, 0)",
        attention_bias_transposed,
        "bug",
        names="bias_transposed",
    ),
    Attempt(
        "window_attention_forward", "masks tiled with repeat_interleave", attention_interleaved_masks, "bug",
        names="mask_wrong_windows",
    ),
    Attempt(
        "window_attention_forward",
        "masked_fill(mask, -inf)",
        attention_inverted_mask,
        "bug",
        names="mask_inverted",
    ),
    Attempt(
        "window_attention_forward",
        "qkv cut into heads first",
        attention_qkv_per_head,
        "bug",
        names="qkv_split_per_head",
    ),
    Attempt("window_attention_forward", "no output projection", attention_no_proj, "bug", names="no_output_projection"),
    Attempt(
        "window_attention_forward", "no mask parameter", attention_no_mask_parameter, "bug", names="missing_parameter"
    ),
    Attempt("window_attention_forward", "returns its input", attention_returns_input, "hard-coded"),
    Attempt(
        "window_attention_forward", "attn(x, mask=mask)", attention_package, "shortcut", "ruled_out",
        "minattn.WindowAttention",
    ),
    Attempt("window_attention_forward", "attn.attend", attention_attend, "shortcut", "ruled_out"),
    Attempt(
        "window_attention_forward", "the package's chunked training kernel", attention_chunked_kernel, "shortcut",
        "ruled_out", "minattn.WindowAttention",
    ),
    Attempt("window_attention_forward", "MONAI's WindowAttention", attention_monai, "shortcut", "ruled_out", "MONAI"),
    Attempt(
        "window_attention_forward", "returns a numpy array",
        lambda attn, x, mask=None: attention_explicit(attn, x, mask).detach().cpu().numpy(), "wrong type",
    ),
    # swin_block_forward
    Attempt("swin_block_forward", "the lesson's steps with your window attention", block_solution, "right"),
    Attempt("swin_block_forward", "torch.roll, einops, the block's mask cache", block_roll_einops, "right"),
    Attempt("swin_block_forward", "float64 twin of the block, cast back", block_float64_inside, "right"),
    Attempt("swin_block_forward", "no roll back", block_no_roll_back, "bug", names="roll_not_undone"),
    Attempt("swin_block_forward", "rolled by +shift", block_roll_plus, "bug", names="roll_direction"),
    Attempt("swin_block_forward", "shifted without the mask", block_no_mask, "bug", names="shifted_without_mask"),
    Attempt("swin_block_forward", "post-norm", block_post_norm, "bug", names="post_norm"),
    Attempt("swin_block_forward", "MLP on the block's input", block_parallel, "bug", names="parallel_branches"),
    Attempt("swin_block_forward", "norm1 before the MLP too", block_norm1_twice, "bug", names="norm1_for_mlp"),
    Attempt("swin_block_forward", "no second residual", block_no_mlp_residual, "bug", names="no_mlp_residual"),
    Attempt("swin_block_forward", "returns its input", block_identity, "hard-coded"),
    Attempt("swin_block_forward", "block(x)", block_package, "shortcut", "ruled_out", "minattn.SwinBlock"),
    Attempt(
        "swin_block_forward", "block.attn(windows, mask=...)", block_package_attention, "shortcut", "ruled_out",
        "minattn.WindowAttention",
    ),
    Attempt(
        "swin_block_forward", "minattn.shifted_window_attention", block_shifted_window_attention, "shortcut",
        "ruled_out", "shifted_window_attention",
    ),
    # swin_block_params_c48_h3_w7
    Attempt("swin_block_params_c48_h3_w7", "by formula", block_params_by_formula(), "right"),
    Attempt(
        "swin_block_params_c48_h3_w7",
        "counted on a shifted block",
        sum(p.numel() for p in minattn.SwinBlock(C, HEADS, WINDOW, 3).parameters()),
        "right",
    ),
    Attempt("swin_block_params_c48_h3_w7", "as a numpy integer", np.int64(block_params_by_formula()), "right"),
    Attempt(
        "swin_block_params_c48_h3_w7",
        "no bias table",
        block_params_by_formula() - 13**3 * HEADS,
        "bug",
        names="no_table",
    ),
    Attempt(
        "swin_block_params_c48_h3_w7", "table for one head", block_params_by_formula() - 13**3 * (HEADS - 1), "bug",
        names="table_one_head",
    ),
    Attempt(
        "swin_block_params_c48_h3_w7", "table rows 7^3", block_params_by_formula() - (13**3 - 7**3) * HEADS, "bug",
        names="table_window_cells",
    ),
    Attempt("swin_block_params_c48_h3_w7", "no LayerNorms", block_params_by_formula() - 4 * C, "bug", names="no_norms"),
    Attempt(
        "swin_block_params_c48_h3_w7", "MLP of width C", block_params_by_formula() - 6 * C * C - 3 * C, "bug",
        names="mlp_width_c",
    ),
    Attempt("swin_block_params_c48_h3_w7", "the stage's printed count", 26106, "hard-coded"),
    # merged_tokens_32x64x64
    Attempt("merged_tokens_32x64x64", "halve each axis", (32 // 2) * (64 // 2) * (64 // 2), "right"),
    Attempt("merged_tokens_32x64x64", "eight times fewer, as a float", 32 * 64 * 64 / 8, "right"),
    Attempt(
        "merged_tokens_32x64x64", "tokens of minattn.cost.num_tokens", minattn.cost.num_tokens((16, 32, 32)), "right"
    ),
    Attempt("merged_tokens_32x64x64", "before merging", 32 * 64 * 64, "bug", names="not_merged"),
    Attempt("merged_tokens_32x64x64", "halved once", 32 * 64 * 64 // 2, "bug", names="halved"),
    Attempt("merged_tokens_32x64x64", "2 x 2 merging", 32 * 32 * 32, "bug", names="merged_2d"),
    Attempt("merged_tokens_32x64x64", "numbers, not tokens", 16 * 32 * 32 * 96, "bug", names="counted_numbers"),
    Attempt("merged_tokens_32x64x64", "a guess", 16000, "hard-coded"),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    assert_verdict(attempt)
