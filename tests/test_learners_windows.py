"""Learners' answers to the window exercises (exercises 05), right and wrong, with the verdict each must get."""

import importlib
import math

import numpy as np
import pytest
import torch
from einops import rearrange
from learners import Attempt, assert_verdict

import minattn
from minattn.grading.topics import windows as topic
from minattn.receptive_field import layers_to_cover, receptive_field
from minattn.sizes import as_triple

# ----------------------------------------------------------------------------- window_partition


def partition_reshape(x, window_size):
    wd, wh, ww = as_triple(window_size)
    B, D, H, W, C = x.shape
    x = x.reshape(B, D // wd, wd, H // wh, wh, W // ww, ww, C).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(-1, wd * wh * ww, C)


def partition_einops(x, window_size):
    wd, wh, ww = as_triple(window_size)
    return rearrange(x, "b (d p) (h q) (w r) c -> (b d h w) (p q r) c", p=wd, q=wh, r=ww)


def partition_loops(x, window_size):
    wd, wh, ww = as_triple(window_size)
    B, D, H, W, C = x.shape
    windows = []
    for b in range(B):
        for d in range(0, D, wd):
            for h in range(0, H, wh):
                for w in range(0, W, ww):
                    windows.append(x[b, d : d + wd, h : h + wh, w : w + ww].reshape(-1, C))
    return torch.stack(windows)


def partition_numpy(x, window_size):
    wd, wh, ww = as_triple(window_size)
    a = x.detach().cpu().numpy()
    B, D, H, W, C = a.shape
    a = a.reshape(B, D // wd, wd, H // wh, wh, W // ww, ww, C).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    return torch.from_numpy(a.reshape(-1, wd * wh * ww, C).copy()).to(x.device)


def partition_one_count(x, window_size):
    """Uses the window count along D for all three axes."""
    wd, wh, ww = as_triple(window_size)
    B, D, C = x.shape[0], x.shape[1], x.shape[-1]
    g = D // wd
    x = x.reshape(B, g, wd, g, wh, g, ww, C).permute(0, 1, 3, 5, 2, 4, 6, 7)
    return x.reshape(-1, wd * wh * ww, C)


def partition_window_order(x, window_size):
    wd, wh, ww = as_triple(window_size)
    return rearrange(x, "b (d p) (h q) (w r) c -> (b w h d) (p q r) c", p=wd, q=wh, r=ww)


def partition_batch_inside(x, window_size):
    wd, wh, ww = as_triple(window_size)
    return rearrange(x, "b (d p) (h q) (w r) c -> (d h w b) (p q r) c", p=wd, q=wh, r=ww)


def partition_token_order(x, window_size):
    wd, wh, ww = as_triple(window_size)
    return rearrange(x, "b (d p) (h q) (w r) c -> (b d h w) (r q p) c", p=wd, q=wh, r=ww)


def partition_strided(x, window_size):
    wd, wh, ww = as_triple(window_size)
    B, D, H, W, C = x.shape
    x = x.reshape(B, wd, D // wd, wh, H // wh, ww, W // ww, C).permute(0, 2, 4, 6, 1, 3, 5, 7)
    return x.reshape(-1, wd * wh * ww, C)


def partition_no_permute(x, window_size):
    wd, wh, ww = as_triple(window_size)
    return x.reshape(-1, wd * wh * ww, x.shape[-1])


def partition_zeros(x, window_size):
    wd, wh, ww = as_triple(window_size)
    n = math.prod(s // w for s, w in zip(x.shape[1:4], (wd, wh, ww)))
    return torch.zeros(x.shape[0] * n, wd * wh * ww, x.shape[-1], dtype=x.dtype, device=x.device)


def partition_monai(x, window_size):
    from monai.networks.nets.swin_unetr import window_partition as monai_window_partition

    return monai_window_partition(x, as_triple(window_size))


# ----------------------------------------------------------------------------- window_reverse


def reverse_reshape(windows, window_size, spatial_shape):
    wd, wh, ww = as_triple(window_size)
    D, H, W = spatial_shape
    C = windows.shape[-1]
    nd, nh, nw = D // wd, H // wh, W // ww
    B = windows.shape[0] // (nd * nh * nw)
    x = windows.reshape(B, nd, nh, nw, wd, wh, ww, C).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(B, D, H, W, C)


def reverse_einops(windows, window_size, spatial_shape):
    wd, wh, ww = as_triple(window_size)
    D, H, W = spatial_shape
    return rearrange(
        windows, "(b d h w) (p q r) c -> b (d p) (h q) (w r) c", d=D // wd, h=H // wh, w=W // ww, p=wd, q=wh, r=ww
    )


def reverse_loops(windows, window_size, spatial_shape):
    wd, wh, ww = as_triple(window_size)
    D, H, W = spatial_shape
    C = windows.shape[-1]
    per_volume = (D // wd) * (H // wh) * (W // ww)
    out = windows.new_zeros(windows.shape[0] // per_volume, D, H, W, C)
    i = 0
    for b in range(out.shape[0]):
        for d in range(0, D, wd):
            for h in range(0, H, wh):
                for w in range(0, W, ww):
                    out[b, d : d + wd, h : h + wh, w : w + ww] = windows[i].reshape(wd, wh, ww, C)
                    i += 1
    return out


def reverse_one_count(windows, window_size, spatial_shape):
    """Takes the number of windows per axis as the cube root of the windows per volume."""
    wd, wh, ww = as_triple(window_size)
    D, H, W = spatial_shape
    C = windows.shape[-1]
    n = D // wd
    B = windows.shape[0] // n**3
    x = windows.reshape(B, n, n, n, wd, wh, ww, C).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(B, D, H, W, C)


def reverse_window_order(windows, window_size, spatial_shape):
    wd, wh, ww = as_triple(window_size)
    D, H, W = spatial_shape
    return rearrange(
        windows, "(b w h d) (p q r) c -> b (d p) (h q) (w r) c", d=D // wd, h=H // wh, w=W // ww, p=wd, q=wh, r=ww
    )


def reverse_token_order(windows, window_size, spatial_shape):
    wd, wh, ww = as_triple(window_size)
    D, H, W = spatial_shape
    return rearrange(
        windows, "(b d h w) (r q p) c -> b (d p) (h q) (w r) c", d=D // wd, h=H // wh, w=W // ww, p=wd, q=wh, r=ww
    )


def reverse_zeros(windows, window_size, spatial_shape):
    per_volume = math.prod(s // w for s, w in zip(spatial_shape, as_triple(window_size)))
    return windows.new_zeros(windows.shape[0] // per_volume, *spatial_shape, windows.shape[-1])


def reverse_monai(windows, window_size, spatial_shape):
    from monai.networks.nets.swin_unetr import window_reverse as monai_window_reverse

    per_volume = math.prod(s // w for s, w in zip(spatial_shape, as_triple(window_size)))
    dims = (windows.shape[0] // per_volume, *spatial_shape)
    return monai_window_reverse(windows, as_triple(window_size), dims)


# ----------------------------------------------------------------------------- cyclic_shift


def shift_roll(x, shift):
    sd, sh, sw = as_triple(shift)
    return torch.roll(x, shifts=(-sd, -sh, -sw), dims=(1, 2, 3))


def shift_one_axis_at_a_time(x, shift):
    for dim, s in zip((1, 2, 3), as_triple(shift)):
        x = torch.roll(x, -s, dims=dim)
    return x


def shift_by_slicing(x, shift):
    for dim, s in zip((1, 2, 3), as_triple(shift)):
        s = s % x.shape[dim]
        x = torch.cat([x.narrow(dim, s, x.shape[dim] - s), x.narrow(dim, 0, s)], dim=dim)
    return x


def shift_numpy(x, shift):
    sd, sh, sw = as_triple(shift)
    a = np.roll(x.detach().cpu().numpy(), (-sd, -sh, -sw), axis=(1, 2, 3))
    return torch.from_numpy(a).to(x.device)


def shift_plus(x, shift):
    return torch.roll(x, shifts=as_triple(shift), dims=(1, 2, 3))


def shift_axes_reversed(x, shift):
    sd, sh, sw = as_triple(shift)
    return torch.roll(x, shifts=(-sd, -sh, -sw), dims=(3, 2, 1))


def shift_wrong_dims(x, shift):
    sd, sh, sw = as_triple(shift)
    return torch.roll(x, shifts=(-sd, -sh, -sw), dims=(0, 1, 2))


def shift_first_only(x, shift):
    s = shift if isinstance(shift, int) else shift[0]
    return torch.roll(x, shifts=(-s, -s, -s), dims=(1, 2, 3))


# ----------------------------------------------------------------------------- shifted_window_mask


def _axis_region(length, w, s, device):
    region = torch.zeros(length, dtype=torch.long, device=device)
    if s > 0:
        region[length - w : length - s] = 1
        region[length - s :] = 2
    return region


def _labels(spatial_shape, window_size, shift, device, combine="base3", starts=False):
    window, shifts = as_triple(window_size), as_triple(shift)
    regions = []
    for length, w, s in zip(spatial_shape, window, shifts):
        region = _axis_region(length, w, s, device)
        regions.append(region.flip(0) if starts else region)
    d, h, w = regions
    if combine == "sum":
        return d[:, None, None] + h[None, :, None] + w[None, None, :]
    return d[:, None, None] * 9 + h[None, :, None] * 3 + w[None, None, :]


def mask_slices(spatial_shape, window_size, shift, device=None):
    labels = _labels(spatial_shape, window_size, shift, device)
    windows = partition_reshape(labels[None, ..., None], window_size)[..., 0]
    return windows[:, :, None] == windows[:, None, :]


def mask_where_einops(spatial_shape, window_size, shift, device=None):
    window, shifts = as_triple(window_size), as_triple(shift)
    labels = torch.zeros(tuple(spatial_shape), dtype=torch.long, device=device)
    for axis, (length, w, s) in enumerate(zip(spatial_shape, window, shifts)):
        coord = torch.arange(length, device=device)
        region = torch.where(coord < length - w, 0, torch.where(coord < length - s, 1, 2)) if s else coord * 0
        labels = labels * 3 + region.reshape([length if a == axis else 1 for a in range(3)])
    wd, wh, ww = window
    windows = rearrange(labels, "(d p) (h q) (w r) -> (d h w) (p q r)", p=wd, q=wh, r=ww)
    return torch.eq(windows.unsqueeze(2), windows.unsqueeze(1))


def mask_loops(spatial_shape, window_size, shift, device=None):
    labels = _labels(spatial_shape, window_size, shift, "cpu")
    windows = partition_loops(labels[None, ..., None], window_size)[..., 0]
    out = torch.zeros(windows.shape[0], windows.shape[1], windows.shape[1], dtype=torch.bool)
    for n, window in enumerate(windows):
        for i in range(len(window)):
            for j in range(len(window)):
                out[n, i, j] = bool(window[i] == window[j])
    return out.to(device)


def mask_long(spatial_shape, window_size, shift, device=None):
    return mask_slices(spatial_shape, window_size, shift, device).long()


def mask_inverted(spatial_shape, window_size, shift, device=None):
    return ~mask_slices(spatial_shape, window_size, shift, device)


def mask_summed_labels(spatial_shape, window_size, shift, device=None):
    labels = _labels(spatial_shape, window_size, shift, device, combine="sum")
    windows = partition_reshape(labels[None, ..., None], window_size)[..., 0]
    return windows[:, :, None] == windows[:, None, :]


def mask_half_window(spatial_shape, window_size, shift, device=None):
    window, shifts = as_triple(window_size), as_triple(shift)
    half = tuple(w // 2 if s else 0 for w, s in zip(window, shifts))
    return mask_slices(spatial_shape, window_size, half, device)


def mask_regions_at_start(spatial_shape, window_size, shift, device=None):
    labels = _labels(spatial_shape, window_size, shift, device, starts=True)
    windows = partition_reshape(labels[None, ..., None], window_size)[..., 0]
    return windows[:, :, None] == windows[:, None, :]


def mask_all_true(spatial_shape, window_size, shift, device=None):
    n = math.prod(s // w for s, w in zip(spatial_shape, as_triple(window_size)))
    size = math.prod(as_triple(window_size))
    return torch.ones(n, size, size, dtype=torch.bool, device=device)


def mask_no_device(spatial_shape, window_size, shift):
    return mask_slices(spatial_shape, window_size, shift)


def mask_via_region_ids(spatial_shape, window_size, shift, device=None):
    labels = minattn.windows.region_ids(spatial_shape, window_size, shift, device=device)
    windows = partition_reshape(labels[None, ..., None], window_size)[..., 0]
    return windows[:, :, None] == windows[:, None, :]


def mask_monai(spatial_shape, window_size, shift, device=None):
    from monai.networks.nets.swin_unetr import compute_mask

    return compute_mask(list(spatial_shape), as_triple(window_size), as_triple(shift), device) == 0


# ----------------------------------------------------------------------------- windows with a blocked pair


def blocked_with_mask(spatial_shape, window_size, shift):
    mask = minattn.shifted_window_mask(spatial_shape, window_size, shift)
    return int((~mask).flatten(1).any(dim=1).sum())


def blocked_by_formula(spatial_shape, window_size, shift):
    counts = [s // w for s, w in zip(spatial_shape, as_triple(window_size))]
    free = math.prod(n - (1 if s else 0) for n, s in zip(counts, as_triple(shift)))
    return math.prod(counts) - free


def blocked_as_tensor(spatial_shape, window_size, shift):
    mask = mask_slices(spatial_shape, window_size, shift)
    return (~mask.flatten(1).all(dim=1)).sum()  # a 0-dim tensor, not an int


def blocked_pairs_counted(spatial_shape, window_size, shift):
    return int((~minattn.shifted_window_mask(spatial_shape, window_size, shift)).sum())


def blocked_free_windows(spatial_shape, window_size, shift):
    return int(minattn.shifted_window_mask(spatial_shape, window_size, shift).flatten(1).all(dim=1).sum())


def blocked_any_true(spatial_shape, window_size, shift):
    return int(minattn.shifted_window_mask(spatial_shape, window_size, shift).flatten(1).any(dim=1).sum())


def blocked_corner_only(spatial_shape, window_size, shift):
    if not any(as_triple(shift)):
        return 0
    counts = [s // w for s, w in zip(spatial_shape, as_triple(window_size))]
    return math.prod(1 if s else n for n, s in zip(counts, as_triple(shift)))


# ----------------------------------------------------------------------------- layers until the grid is reached


def spread(reached, window, shift):
    """The notebook's spread: tokens reached after one (shifted) window attention layer."""
    grid = tuple(reached.shape)
    x = reached[None, ..., None].float()
    if any(shift):
        x = minattn.cyclic_shift(x, shift)
        allowed = minattn.shifted_window_mask(grid, window, shift).float()
    windows = minattn.window_partition(x, window)
    if not any(shift):
        allowed = torch.ones(windows.shape[0], windows.shape[1], windows.shape[1])
    windows = (allowed @ windows > 0).float()
    x = minattn.window_reverse(windows, window, grid)
    if any(shift):
        x = minattn.cyclic_shift(x, tuple(-s for s in shift))
    return x[0, ..., 0] > 0


def reach_with_spread(grid_shape, window_size, token):
    window = as_triple(window_size)
    half = tuple(w // 2 for w in window)
    reached = torch.zeros(tuple(grid_shape), dtype=torch.bool)
    reached[tuple(token)] = True
    layers = 0
    while not reached.all():
        layers += 1
        reached = spread(reached, window, (0, 0, 0) if layers % 2 else half)
    return layers


def reach_per_axis(grid_shape, window_size, token):
    """Windows and masks act on each axis separately, so follow the reached interval axis by axis."""

    def step(reached, length, w, s):
        def place(c):  # (window, region) of coordinate c on the rolled axis
            p = (c - s) % length
            region = 0 if p < length - w else (1 if p < length - s else 2)
            return p // w, region if s else 0

        return {c for c in range(length) if any(place(c) == place(r) for r in reached)}

    done = []
    for length, w, t in zip(grid_shape, as_triple(window_size), token):
        reached, layers = {t}, 0
        while len(reached) < length:
            layers += 1
            reached = step(reached, length, w, 0 if layers % 2 else w // 2)
        done.append(layers)
    return max(done)


def reach_shifted_first(grid_shape, window_size, token):
    window = as_triple(window_size)
    half = tuple(w // 2 for w in window)
    reached = torch.zeros(tuple(grid_shape), dtype=torch.bool)
    reached[tuple(token)] = True
    layers = 0
    while not reached.all():
        layers += 1
        reached = spread(reached, window, half if layers % 2 else (0, 0, 0))
    return layers


def reach_from_corner(grid_shape, window_size, token):
    return reach_with_spread(grid_shape, window_size, (0, 0, 0))


def reach_backwards(grid_shape, window_size, token):
    return layers_to_cover(grid_shape, window_size, token)


def reach_by_receptive_field(grid_shape, window_size, token):
    layers = 1
    while not receptive_field(grid_shape, window_size, token, layers).all():
        layers += 1
    return layers


ATTEMPTS = [
    # window_partition
    Attempt("window_partition", "reshape, permute, reshape", partition_reshape, "right"),
    Attempt("window_partition", "einops.rearrange", partition_einops, "right"),
    Attempt("window_partition", "loops over the windows, then stack", partition_loops, "right"),
    Attempt("window_partition", "numpy round trip", partition_numpy, "right"),
    Attempt("window_partition", "D's window count for all three axes", partition_one_count, "bug", status="error"),
    Attempt("window_partition", "windows numbered W slowest", partition_window_order, "bug", names="window_order"),
    Attempt("window_partition", "batch inside the numbering", partition_batch_inside, "bug", names="batch_order"),
    Attempt("window_partition", "tokens (ww, wh, wd) in a window", partition_token_order, "bug", names="token_order"),
    Attempt("window_partition", "axes split (window, grid)", partition_strided, "bug", names="strided_windows"),
    Attempt(
        "window_partition", "reshape without permute", partition_no_permute, "bug", names="reshape_without_permute"
    ),
    Attempt("window_partition", "zeros of the right shape", partition_zeros, "hard-coded"),
    Attempt(
        "window_partition",
        "minattn's own",
        minattn.window_partition,
        "shortcut",
        "ruled_out",
        "minattn.window_partition",
    ),
    Attempt("window_partition", "MONAI's window_partition", partition_monai, "shortcut", "ruled_out", "MONAI"),
    Attempt(
        "window_partition", "returns a numpy array", lambda x, w: partition_reshape(x, w).cpu().numpy(), "wrong type"
    ),
    # window_reverse
    Attempt("window_reverse", "reshape, permute, reshape", reverse_reshape, "right"),
    Attempt("window_reverse", "einops.rearrange", reverse_einops, "right"),
    Attempt("window_reverse", "loops writing each window back", reverse_loops, "right"),
    Attempt("window_reverse", "cube root of the windows per volume", reverse_one_count, "bug", status="error"),
    Attempt("window_reverse", "windows read W slowest", reverse_window_order, "bug", names="window_order"),
    Attempt("window_reverse", "tokens read (ww, wh, wd)", reverse_token_order, "bug", names="token_order"),
    Attempt("window_reverse", "zeros of the right shape", reverse_zeros, "hard-coded"),
    Attempt(
        "window_reverse", "minattn's own", minattn.window_reverse, "shortcut", "ruled_out", "minattn.window_reverse"
    ),
    Attempt("window_reverse", "MONAI's window_reverse", reverse_monai, "shortcut", "ruled_out", "MONAI"),
    # cyclic_shift
    Attempt("cyclic_shift", "torch.roll over three dims", shift_roll, "right"),
    Attempt("cyclic_shift", "one roll per axis", shift_one_axis_at_a_time, "right"),
    Attempt("cyclic_shift", "narrow and cat", shift_by_slicing, "right"),
    Attempt("cyclic_shift", "numpy round trip", shift_numpy, "right"),
    Attempt("cyclic_shift", "rolls by +shift", shift_plus, "bug", names="roll_direction"),
    Attempt("cyclic_shift", "shifts paired with (W, H, D)", shift_axes_reversed, "bug", names="roll_axes_reversed"),
    Attempt("cyclic_shift", "rolls the batch axis", shift_wrong_dims, "bug", names="roll_wrong_dims"),
    Attempt("cyclic_shift", "sd for every axis", shift_first_only, "bug", names="one_shift_for_all_axes"),
    Attempt("cyclic_shift", "returns x unchanged", lambda x, shift: x.clone(), "hard-coded"),
    Attempt("cyclic_shift", "minattn's own", minattn.cyclic_shift, "shortcut", "ruled_out", "minattn.cyclic_shift"),
    # shifted_window_mask
    Attempt("shifted_window_mask", "region slices, labels base 3", mask_slices, "right"),
    Attempt("shifted_window_mask", "torch.where regions, einops windows", mask_where_einops, "right"),
    Attempt("shifted_window_mask", "loops over windows and pairs", mask_loops, "right"),
    Attempt("shifted_window_mask", "a long tensor of 0 and 1", mask_long, "wrong type", says="boolean"),
    Attempt("shifted_window_mask", "True where regions differ", mask_inverted, "bug", names="mask_inverted"),
    Attempt("shifted_window_mask", "per-axis labels added up", mask_summed_labels, "bug", names="labels_summed"),
    Attempt("shifted_window_mask", "regions cut at window // 2", mask_half_window, "bug", names="half_window_shift"),
    Attempt("shifted_window_mask", "regions at the start", mask_regions_at_start, "bug", names="regions_mirrored"),
    Attempt("shifted_window_mask", "everything allowed", mask_all_true, "hard-coded", names="mask_allows_all"),
    Attempt("shifted_window_mask", "no device parameter", mask_no_device, "bug", names="missing_parameter"),
    Attempt(
        "shifted_window_mask",
        "minattn's own",
        minattn.shifted_window_mask,
        "shortcut",
        "ruled_out",
        "minattn.shifted_window_mask",
    ),
    Attempt("shifted_window_mask", "labels from region_ids", mask_via_region_ids, "shortcut", "ruled_out"),
    Attempt("shifted_window_mask", "MONAI's compute_mask", mask_monai, "shortcut", "ruled_out", "MONAI"),
    # windows_32x64x64_w8
    Attempt("windows_32x64x64_w8", "4 * 8 * 8", (32 // 8) * (64 // 8) * (64 // 8), "right"),
    Attempt("windows_32x64x64_w8", "tokens / tokens per window, a float", 32 * 64 * 64 / 8**3, "right"),
    Attempt(
        "windows_32x64x64_w8",
        "counted with window_partition",
        minattn.window_partition(torch.zeros(1, 32, 64, 64, 1), 8).shape[0],
        "right",
    ),
    Attempt("windows_32x64x64_w8", "the token count", 32 * 64 * 64, "bug", names="tokens"),
    Attempt("windows_32x64x64_w8", "tokens / 8", 32 * 64 * 64 // 8, "bug", names="divided_by_8_once"),
    Attempt("windows_32x64x64_w8", "tokens in a window", 512, "bug", names="tokens_per_window"),
    Attempt("windows_32x64x64_w8", "4 + 8 + 8", 20, "bug", names="added_axes"),
    Attempt("windows_32x64x64_w8", "the 8^3 grid's count typed in", 8, "hard-coded"),
    Attempt("windows_32x64x64_w8", "text", "256 windows", "wrong type"),
    # windows_with_blocked_pairs
    Attempt("windows_with_blocked_pairs", "minattn's mask, any blocked pair", blocked_with_mask, "right"),
    Attempt("windows_with_blocked_pairs", "all windows minus the free ones", blocked_by_formula, "right"),
    Attempt("windows_with_blocked_pairs", "own mask, a 0-dim tensor", blocked_as_tensor, "right"),
    Attempt(
        "windows_with_blocked_pairs",
        "counts blocked pairs",
        blocked_pairs_counted,
        "bug",
        names="counted_blocked_pairs",
    ),
    Attempt(
        "windows_with_blocked_pairs",
        "counts free windows",
        blocked_free_windows,
        "bug",
        names="counted_unmasked_windows",
    ),
    Attempt("windows_with_blocked_pairs", "looks for a True", blocked_any_true, "bug", names="counted_every_window"),
    Attempt(
        "windows_with_blocked_pairs", "only the corner window", blocked_corner_only, "bug", names="corner_window_only"
    ),
    Attempt(
        "windows_with_blocked_pairs",
        "the lesson's 7 typed in",
        lambda spatial_shape, window_size, shift: 7,
        "hard-coded",
    ),
    Attempt(
        "windows_with_blocked_pairs",
        "the grader's own function",
        topic.windows_with_blocked_pairs,
        "shortcut",
        "ruled_out",
        "minattn.grading",
    ),
    # layers_to_reach_all
    Attempt("layers_to_reach_all", "spread, layer after layer", reach_with_spread, "right"),
    Attempt("layers_to_reach_all", "axis by axis, with sets", reach_per_axis, "right"),
    Attempt("layers_to_reach_all", "shifted layer first", reach_shifted_first, "bug"),
    Attempt("layers_to_reach_all", "always from the corner", reach_from_corner, "bug", names="token_ignored"),
    Attempt("layers_to_reach_all", "the lesson's 3 typed in", lambda grid_shape, window_size, token: 3, "hard-coded"),
    Attempt(
        "layers_to_reach_all", "layers_to_cover", reach_backwards, "shortcut", "ruled_out", "minattn.receptive_field"
    ),
    Attempt("layers_to_reach_all", "receptive_field in a loop", reach_by_receptive_field, "shortcut", "ruled_out"),
    Attempt(
        "layers_to_reach_all",
        "the grader's own function",
        topic.layers_to_reach_all,
        "shortcut",
        "ruled_out",
        "minattn.grading",
    ),
]


@pytest.mark.parametrize("attempt", ATTEMPTS, ids=lambda a: a.id)
def test_learner_gets_the_right_verdict(attempt):
    if "MONAI" in attempt.label:
        # A learner imports MONAI in an earlier cell; importing it takes seconds, which are not the check's.
        importlib.import_module("monai.networks.nets.swin_unetr")
    assert_verdict(attempt)
