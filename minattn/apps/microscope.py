"""Attention as a microscope: train a small 3D Swin lesion detector, then ask where it looks.

The pieces, in the order the lesson uses them:

- :func:`make_lesion_volumes`: CT-like volumes cut from :func:`minattn.data.phantom`, half of them
  with one lesion of random size, contrast and position; the label says whether a lesion is
  there and the lesion mask says where (the ground truth we measure attention against).
- :class:`SwinClassifier`: :class:`minattn.PatchEmbed` -> :class:`minattn.SwinStage` ->
  LayerNorm -> mean pooling over tokens -> a linear head giving one logit per volume.
- :func:`train` (the applications' one training loop, :func:`minattn.apps.training.fit`) and
  :func:`accuracy`.
- :func:`window_weights_to_grid`: the weights a :class:`minattn.WindowAttention` records per
  window, put back where the tokens sit, as one ``(N, N)`` token-to-token matrix per volume.
- :func:`attention_rollout` (Abnar & Zuidema, 2020), :func:`received_attention`, and
  :func:`attention_maps`, which turns both into voxel maps of the input.
- :func:`lesion_attention_ratio`: the share of attention inside the lesion, divided by the share
  that chance would give it (the lesion's volume fraction).

Everything is seeded and deterministic on a given machine, and runs on any device and dtype.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from .._validate import as_size_tuple, check_int
from ..data import insert_lesion, lesion_mask, phantom, scale_hu
from ..metrics import binary_accuracy
from ..patches import PatchEmbed
from ..swin import SwinStage
from ..windows import WindowLayout
from ._samples import SampleSet
from .training import History, fit

__all__ = [
    "LesionVolumes",
    "RatioReport",
    "SwinClassifier",
    "accuracy",
    "attention_maps",
    "attention_matrices",
    "attention_rollout",
    "hu_to_input",
    "layer_names",
    "lesion_attention_ratio",
    "make_lesion_volumes",
    "predict",
    "received_attention",
    "record_attention",
    "token_map_to_voxels",
    "train",
    "window_token_ids",
    "window_weights_to_grid",
]


# ------------------------------------------------------------------------------------ the data

# The intensity window the network sees: level 40 HU, width 400 HU (a soft-tissue window), mapped
# to [-1, 1]. Air, lung and fat go to -1 and bone to +1, so the network's first layer spends its
# range on the soft tissue where the lesions are, as a radiologist's window does.
WINDOW_LEVEL_HU = 40.0
WINDOW_WIDTH_HU = 400.0


def hu_to_input(hu: torch.Tensor, level: float = WINDOW_LEVEL_HU, width: float = WINDOW_WIDTH_HU) -> torch.Tensor:
    """Map Hounsfield units to the network's input range: the window ``level +- width / 2`` onto [-1, 1]."""
    return scale_hu(hu, width / 2, centre=level, clip=(level - width / 2, level + width / 2))


@dataclass
class LesionVolumes(SampleSet):
    """A labelled set of volumes with their lesion masks.

    Attributes:
        volumes: float ``(N, 1, D, H, W)``, already windowed to [-1, 1] (:func:`hu_to_input`).
        labels: float ``(N,)``, 1.0 where the volume holds a lesion, else 0.0.
        masks: bool ``(N, D, H, W)``, the lesion's voxels (all False without a lesion).
        lesions: per volume, ``None`` or a dict with the lesion's ``centre`` (voxels),
            ``radius`` (voxels) and ``contrast`` (HU).
    """

    volumes: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor
    lesions: list = field(default_factory=list)

    def to(self, device=None, dtype=None) -> LesionVolumes:
        """A copy on ``device``; ``dtype`` applies to the volumes and labels (masks stay bool)."""
        return LesionVolumes(
            self.volumes.to(device=device, dtype=dtype),
            self.labels.to(device=device, dtype=dtype),
            self.masks.to(device=device),
            list(self.lesions),
        )


@functools.lru_cache(maxsize=4)
def _anatomy(base: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise-free phantom torso at ``base`` and the voxels a lesion may be centred on (cached)."""
    volume, _ = phantom(base, lesions=0, noise_hu=0.0)
    # Centres in soft tissue and organs (25-65 HU): a lesion in fat or lung would be a different
    # finding (a soft-tissue nodule) and one in bone is not what we are looking for.
    allowed = (volume >= 25.0) & (volume <= 65.0)
    return volume, allowed


def _draw_lesion(soft: torch.Tensor, radius_range, generator, tries: int = 100):
    """A centre and radius for a lesion that lies (at least 90 %) in soft tissue and (80 %) in the crop.

    Rejection sampling: a lesion that overlapped the lungs, fat or bone, or was mostly cut off by
    the edge of the crop, would be a different (and ambiguous) finding. After ``tries`` refusals
    the last draw is kept.
    """
    candidates = soft.nonzero()
    if len(candidates) == 0:
        raise ValueError(f"a crop of shape {tuple(soft.shape)} holds no soft tissue for a lesion; use a larger shape")
    for _ in range(tries):
        centre = candidates[int(torch.randint(0, len(candidates), (1,), generator=generator))].tolist()
        radius = radius_range[0] + (radius_range[1] - radius_range[0]) * float(torch.rand((), generator=generator))
        inside = lesion_mask(soft.shape, [float(c) for c in centre], radius)
        size = int(inside.sum())
        if int((inside & soft).sum()) >= 0.9 * size and size >= 0.8 * (4 / 3) * math.pi * radius**3:
            break
    return centre, radius


def make_lesion_volumes(
    n: int,
    shape: Sequence[int] = (32, 32, 32),
    seed: int = 0,
    lesion_fraction: float = 0.5,
    radius_range: tuple[float, float] = (3.0, 5.5),
    contrast_range: tuple[float, float] = (100.0, 200.0),
    noise_hu: float = 10.0,
    margin: int = 8,
    device=None,
    dtype: torch.dtype = torch.float32,
) -> LesionVolumes:
    """CT-like volumes with and without a lesion, deterministic for ``seed``.

    Each volume is a random crop of a :func:`minattn.data.phantom` torso of
    ``shape + margin`` voxels (so organs sit at a different place in every
    volume), with probability ``lesion_fraction`` one spherical lesion
    (:func:`minattn.data.insert_lesion`), then Gaussian noise, then the
    soft-tissue window :func:`hu_to_input`. A lesion lies in soft tissue or an
    organ (at least 90 % of its voxels) and mostly inside the crop: a bright
    sphere in the liver, not a blob against a rib or half outside the view.

    Args:
        n: number of volumes.
        shape: ``(D, H, W)`` of each volume.
        seed: the same seed gives the same volumes, bit for bit.
        lesion_fraction: probability that a volume holds a lesion.
        radius_range: lesion radius in voxels, drawn uniformly.
        contrast_range: lesion contrast in HU (added to the tissue), drawn uniformly.
        noise_hu: standard deviation of the CT noise.
        margin: how many voxels larger the torso is than a crop, per axis.

    Returns:
        :class:`LesionVolumes` with ``volumes`` ``(n, 1, D, H, W)``, ``labels`` ``(n,)``,
        ``masks`` ``(n, D, H, W)``.
    """
    check_int(n, "n", minimum=0)
    shape = as_size_tuple(tuple(shape), 3, "shape")
    if not 0.0 <= lesion_fraction <= 1.0:
        raise ValueError(f"lesion_fraction must lie in [0, 1]; received {lesion_fraction}")
    if not 0 < radius_range[0] <= radius_range[1]:
        raise ValueError(f"radius_range must be (low, high) with 0 < low <= high; received {radius_range}")
    if contrast_range[0] > contrast_range[1]:
        raise ValueError(f"contrast_range must be (low, high) with low <= high; received {contrast_range}")
    base = tuple(s + margin for s in shape)
    anatomy, allowed = _anatomy(base)
    g = torch.Generator().manual_seed(int(seed))
    volumes = torch.empty(n, 1, *shape)
    masks = torch.zeros(n, *shape, dtype=torch.bool)
    labels = torch.zeros(n)
    lesions: list = []
    for i in range(n):
        offset = [int(torch.randint(0, margin + 1, (1,), generator=g)) for _ in range(3)]
        crop = tuple(slice(o, o + s) for o, s in zip(offset, shape))
        volume = anatomy[crop]
        if float(torch.rand((), generator=g)) < lesion_fraction:
            soft = allowed[crop]
            centre, radius = _draw_lesion(soft, radius_range, g)
            contrast = contrast_range[0] + (contrast_range[1] - contrast_range[0]) * float(torch.rand((), generator=g))
            volume, masks[i] = insert_lesion(volume, [float(c) for c in centre], radius, contrast)
            labels[i] = 1.0
            lesions.append({"centre": tuple(centre), "radius": radius, "contrast": contrast})
        else:
            lesions.append(None)
        volumes[i, 0] = hu_to_input(volume + noise_hu * torch.randn(shape, generator=g))
    return LesionVolumes(volumes, labels, masks, lesions).to(device=device, dtype=dtype)


# ----------------------------------------------------------------------------------- the model


class SwinClassifier(nn.Module):
    """A small 3D Swin lesion detector: one logit per volume.

    ``(B, C, D, H, W)`` -> :class:`PatchEmbed` -> ``(B, d, h, w, E)`` -> :class:`SwinStage`
    (blocks alternating regular and shifted windows) -> LayerNorm -> pooling over the tokens ->
    ``Linear(E, 1)``. There is no class token; attention maps are read from the blocks.

    The pooling decides what attention has to do. With the mean (default) every token counts
    1/N, so a lesion a few tokens wide is heard only if its evidence is copied into many
    tokens, and attention is the only path between tokens: the model learns to attend to the
    lesion. With the max one token that sees the lesion is enough and attention need not go
    there at all (compare both with :func:`lesion_attention_ratio`).

    Args:
        in_channels: image channels C.
        patch_size: voxels per token along each axis (an int or three ints).
        embed_dim: token features E.
        depth: Swin blocks (even ones regular, odd ones shifted by half a window).
        num_heads: attention heads per block.
        window_size: window in tokens.
        mlp_ratio: hidden width of each block's MLP, as a multiple of E.
        pool: ``"mean"`` or ``"max"`` over the tokens.
        seed: if given, the weights are initialised from this seed without touching the
            global random state.
    """

    def __init__(
        self,
        in_channels: int = 1,
        patch_size=4,
        embed_dim: int = 32,
        depth: int = 2,
        num_heads: int = 2,
        window_size=4,
        mlp_ratio: float = 2.0,
        pool: str = "mean",
        seed: int | None = None,
    ):
        super().__init__()
        if pool not in ("max", "mean"):
            raise ValueError(f"pool must be 'max' or 'mean'; received {pool!r}")
        self.pool = pool
        with torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext():
            if seed is not None:
                torch.manual_seed(seed)
            self.embed = PatchEmbed(patch_size, in_channels, embed_dim, spatial_dims=3)
            self.stage = SwinStage(embed_dim, depth, num_heads, window_size, mlp_ratio=mlp_ratio)
            self.norm = nn.LayerNorm(embed_dim)
            self.head = nn.Linear(embed_dim, 1)
        self.patch_size = self.embed.patch_size

    @property
    def blocks(self) -> list:
        """The Swin blocks, in order."""
        return list(self.stage.blocks)

    def token_grid(self, spatial_shape) -> tuple[int, int, int]:
        """Tokens per axis ``(d, h, w)`` for an image of ``spatial_shape`` ``(D, H, W)``."""
        return tuple(int(s) // p for s, p in zip(spatial_shape, self.patch_size))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, D, H, W)`` -> normalised token features ``(B, d, h, w, E)`` before pooling."""
        if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[1] != self.embed.in_channels:
            raise ValueError(
                f"x must have shape (B, {self.embed.in_channels}, D, H, W); received {tuple(getattr(x, 'shape', ()))}"
            )
        return self.norm(self.stage(self.embed(x, as_grid=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, D, H, W)`` -> logits ``(B,)`` (positive = lesion)."""
        tokens = self.features(x).flatten(1, 3)  # (B, N, E)
        pooled = tokens.amax(dim=1) if self.pool == "max" else tokens.mean(dim=1)
        return self.head(pooled)[:, 0]


# -------------------------------------------------------------------------------- training


def train(
    model: SwinClassifier,
    data: LesionVolumes,
    epochs: int = 3,
    batch_size: int = 8,
    lr: float = 2e-3,
    weight_decay: float = 0.01,
    seed: int = 0,
    progress: bool = True,
    threads: int | None = 1,
    max_grad_norm: float | None = 1.0,
) -> History:
    """Train ``model`` in place with AdamW, a one-cycle learning rate and gradient clipping.

    The volumes are shuffled by a generator seeded with ``seed``, so the same
    model, data and seed give the same weights on the same machine. The batches
    go to the model's device and dtype.

    Args:
        model: the classifier (its parameters set the device and dtype).
        data: the training volumes.
        epochs: passes over ``data``.
        batch_size: volumes per step; a last, smaller batch is dropped.
        lr: the peak learning rate.
        weight_decay: AdamW's decoupled weight decay.
        seed: seeds the shuffling.
        progress: show a tqdm progress bar (the notebook one inside Jupyter).
        max_grad_norm: clip the gradient's norm to this (None: no clipping). Without
            clipping, one seed in six was measured to stall near 84 % accuracy.
        threads: torch CPU threads while training, restored afterwards; the
            default 1 is the fastest for tensors this small on a busy machine
            (two threads fighting for two shared cores were measured ~10x
            slower). None leaves torch's setting alone.

    Returns:
        :class:`~minattn.apps.training.History`: ``losses`` of every step, ``seconds``, ``steps``.
    """
    if len(data) < batch_size:
        raise ValueError(f"data holds {len(data)} volumes, fewer than one batch of {batch_size}")
    parameter = next(model.parameters())

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        x = data.volumes[index].to(device=parameter.device, dtype=parameter.dtype)
        y = data.labels[index].to(device=parameter.device, dtype=parameter.dtype)
        return nn.functional.binary_cross_entropy_with_logits(model(x), y)

    def one_cycle(optimiser, total_steps):
        return torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=total_steps, pct_start=0.2)

    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    return fit(
        model,
        batch_loss,
        len(data),
        optimiser,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        schedule=one_cycle,
        max_grad_norm=max_grad_norm,
        drop_last=True,
        progress=progress,
        threads=threads,
    )


@torch.no_grad()
def predict(model: SwinClassifier, volumes: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Lesion probabilities ``(N,)`` on the CPU for ``volumes`` ``(N, C, D, H, W)``, in eval mode."""
    model.eval()
    parameter = next(model.parameters())
    out = [
        torch.sigmoid(model(volumes[i : i + batch_size].to(device=parameter.device, dtype=parameter.dtype)))
        for i in range(0, volumes.shape[0], batch_size)
    ]
    return torch.cat(out).cpu() if out else torch.zeros(0)


def accuracy(model: SwinClassifier, data: LesionVolumes) -> float:
    """Share of ``data`` classified correctly (lesion iff probability > 0.5)."""
    return binary_accuracy(predict(model, data.volumes), data.labels)


# ------------------------------------------------------------------ attention back on the grid


def window_token_ids(spatial_shape, window_size, shift_size, device=None):
    """Which grid token sits in each slot of each window of a (shifted) window attention layer.

    The layer pads the grid to whole windows, rolls it by ``-shift`` and cuts it into windows
    (:class:`minattn.windows.WindowLayout`); this reads the same layout's token ids.

    Args:
        spatial_shape: the token grid ``(d, h, w)`` the layer receives.
        window_size, shift_size: the layer's nominal window and shift (an int or three ints);
            they shrink where the grid is smaller, as in the layer itself.

    Returns:
        ``(ids, padded, window, shift)``: ``ids`` long ``(nW, n)``, the flat row-major index on the
        *padded* grid of the token in slot ``i`` of window ``w``; ``padded`` the padded grid; and the
        effective ``window`` and ``shift``.
    """
    layout = WindowLayout(spatial_shape, window_size, shift_size)
    return layout.token_ids(device), layout.padded, layout.window, layout.shift


def window_weights_to_grid(
    weights: torch.Tensor, spatial_shape, window_size, shift_size, keep_padding: bool = False
) -> torch.Tensor:
    """Recorded window attention as one token-to-token matrix over the whole grid.

    Entry ``[b, h, i, j]`` is how much token ``i`` attends to token ``j`` (flat row-major indices
    of the grid) in volume ``b`` and head ``h``; pairs in different windows, and pairs the
    shifted-window mask forbids, are 0. For a shifted layer the windows were cut from the rolled
    grid, so a window's slots are mapped back through the roll (:func:`window_token_ids`).

    Args:
        weights: ``(B * nW, heads, n, n)``, as :class:`minattn.WindowAttention` records them in
            ``last_weights`` (windows batch-major, in :func:`minattn.window_partition` order).
        spatial_shape: the token grid ``(d, h, w)`` the layer received (unpadded).
        window_size, shift_size: the layer's nominal window and shift.
        keep_padding: False (default): rows and columns of the padding tokens are dropped, so
            ``N = d * h * w``; a row then sums to less than 1 where its query attended to padding
            (zeros that carry nothing from the image). True: keep the padded grid.

    Returns:
        ``(B, heads, N, N)``.
    """
    ids, padded, window, shift = window_token_ids(spatial_shape, window_size, shift_size, device=weights.device)
    num_windows, n = ids.shape
    if not isinstance(weights, torch.Tensor) or weights.ndim != 4 or weights.shape[-2:] != (n, n):
        raise ValueError(
            f"weights must have shape (B * nW, heads, {n}, {n}) for window {window} on grid {tuple(spatial_shape)}; "
            f"received {tuple(getattr(weights, 'shape', ()))}"
        )
    if weights.shape[0] % num_windows:
        raise ValueError(
            f"weights hold {weights.shape[0]} windows (dim 0), not a multiple of the {num_windows} windows "
            f"per volume of grid {tuple(spatial_shape)} padded to {padded} in windows {window}"
        )
    batch, heads = weights.shape[0] // num_windows, weights.shape[1]
    total = math.prod(padded)
    full = weights.new_zeros(batch, heads, total, total)
    rows = ids[:, :, None].expand(num_windows, n, n)
    cols = ids[:, None, :].expand(num_windows, n, n)
    # Every token lies in exactly one window, so each (row, col) pair is written at most once.
    full[:, :, rows, cols] = weights.reshape(batch, num_windows, heads, n, n).transpose(1, 2)
    if keep_padding:
        return full
    real = WindowLayout(spatial_shape, window_size, shift_size).real(weights.device).flatten().nonzero()[:, 0]
    return full[:, :, real][:, :, :, real]


@contextlib.contextmanager
def record_attention(model: SwinClassifier):
    """Make every block's :class:`WindowAttention` keep its weights while in the ``with`` block.

    Recording takes the explicit attention path, which computes the weights; the previous
    settings are restored on exit.
    """
    blocks = model.blocks
    before = [block.attn.record_weights for block in blocks]
    for block in blocks:
        block.attn.record_weights = True
    try:
        yield blocks
    finally:
        for block, flag in zip(blocks, before):
            block.attn.record_weights = flag


@torch.no_grad()
def attention_matrices(model: SwinClassifier, volumes: torch.Tensor, average_heads: bool = True) -> torch.Tensor:
    """Every block's attention as token-to-token matrices over the token grid.

    Args:
        model: the classifier.
        volumes: ``(B, C, D, H, W)``.
        average_heads: average over heads (default), as attention maps and rollout use.

    Returns:
        ``(L, B, N, N)`` (or ``(L, B, heads, N, N)``) for the L blocks, ``N = d * h * w`` tokens.
    """
    model.eval()
    parameter = next(model.parameters())
    volumes = volumes.to(device=parameter.device, dtype=parameter.dtype)
    grid = model.token_grid(volumes.shape[2:])
    with record_attention(model) as blocks:
        model(volumes)
        matrices = []
        for block in blocks:
            weights = block.attn.last_weights
            if average_heads:
                weights = weights.mean(1, keepdim=True)
            full = window_weights_to_grid(weights, grid, block.attn.window_size, block.shift_size)
            matrices.append(full[:, 0] if average_heads else full)
            block.attn.last_weights = None  # free it: only the matrices are kept
    return torch.stack(matrices)


def received_attention(matrix: torch.Tensor) -> torch.Tensor:
    """How much attention each token receives, averaged over the queries: ``(..., N, N)`` -> ``(..., N)``.

    Column ``j`` of the matrix holds what every query gives token ``j``; its mean over the rows is
    a saliency that needs no class token. It sums to 1 over the tokens (less where queries attended
    to padding).
    """
    if not isinstance(matrix, torch.Tensor) or matrix.ndim < 2 or matrix.shape[-1] != matrix.shape[-2]:
        raise ValueError(f"matrix must have shape (..., N, N); received {tuple(getattr(matrix, 'shape', ()))}")
    return matrix.mean(-2)


def attention_rollout(matrices, add_residual: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema, 2020): how much each output token draws on each input token.

    Per layer, the residual connection is accounted for by adding the identity (the token keeps
    itself), each row is renormalised to sum to 1, and the layers are chained by matrix products:

        R = Ã_L @ ... @ Ã_2 @ Ã_1,   Ã_l = (A_l + I) / rowsum(A_l + I)

    Args:
        matrices: ``(L, ..., N, N)`` (or a list of L such tensors), first layer first; row ``i``
            of a layer's matrix is query ``i``'s attention over the keys.
        add_residual: add the identity before renormalising (the paper's rollout); False chains
            the raw, row-normalised attention.

    Returns:
        ``(..., N, N)``: ``R[i, j]`` = share of output token ``i`` traced back to input token ``j``;
        every row sums to 1.
    """
    if isinstance(matrices, (list, tuple)):
        if not matrices:
            raise ValueError("matrices must hold at least one layer")
        matrices = torch.stack(list(matrices))
    if not isinstance(matrices, torch.Tensor) or matrices.ndim < 3 or matrices.shape[-1] != matrices.shape[-2]:
        raise ValueError(
            f"matrices must have shape (L, ..., N, N), layers first; received {tuple(getattr(matrices, 'shape', ()))}"
        )
    n = matrices.shape[-1]
    eye = torch.eye(n, dtype=matrices.dtype, device=matrices.device)
    rollout = None
    for layer in matrices:
        a = layer + eye if add_residual else layer
        a = a / a.sum(-1, keepdim=True).clamp_min(torch.finfo(a.dtype).tiny)
        rollout = a if rollout is None else a @ rollout
    return rollout


def token_map_to_voxels(token_map: torch.Tensor, patch_size) -> torch.Tensor:
    """Spread a per-token map over the voxels of each token's patch.

    Args:
        token_map: ``(B, d, h, w)``.
        patch_size: voxels per token along each axis.

    Returns:
        ``(B, d*pd, h*ph, w*pw)``: each voxel gets its token's value divided by the patch volume,
        so a map's total (its "mass") is unchanged.
    """
    if not isinstance(token_map, torch.Tensor) or token_map.ndim != 4:
        raise ValueError(f"token_map must have shape (B, d, h, w); received {tuple(getattr(token_map, 'shape', ()))}")
    patch = as_size_tuple(patch_size, 3, "patch_size")
    out = token_map
    for axis, p in enumerate(patch, start=1):
        out = out.repeat_interleave(p, dim=axis)
    return out / math.prod(patch)


def layer_names(model: SwinClassifier) -> list[str]:
    """``["block 1 (regular)", "block 2 (shifted)", ...]``."""
    return [f"block {i + 1} ({'shifted' if any(b.shift_size) else 'regular'})" for i, b in enumerate(model.blocks)]


@torch.no_grad()
def attention_maps(model: SwinClassifier, volumes: torch.Tensor, batch_size: int = 16) -> dict:
    """Voxel maps of where the model looks: the attention each block's tokens receive, and the rollout.

    Args:
        model: the classifier.
        volumes: ``(B, C, D, H, W)``.
        batch_size: volumes per forward pass (the ``(N, N)`` matrices of a batch are held at once).

    Returns:
        dict name -> ``(B, D', H', W')`` float maps on the voxels the tokens cover
        (``D' = d * pd``, the image when it is a multiple of the patch), each summing to 1 per
        volume: one per block (:func:`received_attention` of that block, named by
        :func:`layer_names`), and ``"rollout"``: :func:`attention_rollout` across the blocks,
        averaged over the output tokens (the pooled output depends on all of them). The maps are
        returned on the CPU (a test set of them can be large), in the model's dtype.
    """
    names = layer_names(model) + ["rollout"]
    grid = model.token_grid(volumes.shape[2:])
    parts: dict = {name: [] for name in names}
    for start in range(0, volumes.shape[0], batch_size):
        matrices = attention_matrices(model, volumes[start : start + batch_size])  # (L, b, N, N)
        token_maps = list(received_attention(matrices)) + [received_attention(attention_rollout(matrices))]
        for name, token_map in zip(names, token_maps):
            token_map = token_map / token_map.sum(-1, keepdim=True)
            parts[name].append(token_map_to_voxels(token_map.reshape(-1, *grid), model.patch_size).cpu())
    return {name: torch.cat(maps) for name, maps in parts.items()}


# --------------------------------------------------------------------- attention inside lesions


@dataclass
class RatioReport:
    """Attention-in-lesion ratios over a set of volumes, and their spread.

    ``per_volume[k]`` = (share of the map's mass inside lesion k) / (lesion k's share of the
    volume). 1 is what a map blind to the lesion gives on average; above 1 the map is
    concentrated on the lesion.
    """

    per_volume: torch.Tensor
    mean: float
    std: float
    median: float
    q25: float
    q75: float
    share_above_one: float

    def __str__(self) -> str:
        return (
            f"attention-in-lesion / chance: mean {self.mean:.2f} +- {self.std:.2f} (sd), median {self.median:.2f} "
            f"(IQR {self.q25:.2f}-{self.q75:.2f}), > 1 in {100 * self.share_above_one:.0f}% of "
            f"{len(self.per_volume)} lesions"
        )


def lesion_attention_ratio(maps: torch.Tensor, masks: torch.Tensor) -> RatioReport:
    """Share of attention inside the lesion, divided by the share chance would give it.

    Args:
        maps: ``(B, D, H, W)`` non-negative maps (attention, rollout, any saliency).
        masks: bool ``(B, D, H, W)`` lesion masks; volumes without a lesion are skipped.

    Returns:
        :class:`RatioReport` over the volumes that hold a lesion.
    """
    if not isinstance(maps, torch.Tensor) or not isinstance(masks, torch.Tensor) or maps.shape != masks.shape:
        raise ValueError(
            "maps and masks must be tensors of the same shape (B, D, H, W); received "
            f"{tuple(getattr(maps, 'shape', ()))} and {tuple(getattr(masks, 'shape', ()))}"
        )
    if maps.ndim < 2:
        raise ValueError(f"maps must have a batch axis, (B, D, H, W); received {tuple(maps.shape)}")
    # float64 on the CPU: exact enough for shares of 1e-3, and available on every backend
    maps, masks = maps.detach().flatten(1).cpu().double(), masks.detach().flatten(1).cpu().bool()
    has_lesion = masks.any(1)
    if not bool(has_lesion.any()):
        raise ValueError("no volume holds a lesion: the ratio is undefined")
    maps, masks = maps[has_lesion], masks[has_lesion]
    share_inside = (maps * masks).sum(1) / maps.sum(1)
    chance = masks.double().mean(1)
    ratios = (share_inside / chance).float()
    q25, median, q75 = torch.quantile(ratios, torch.tensor([0.25, 0.5, 0.75])).tolist()
    return RatioReport(
        per_volume=ratios,
        mean=float(ratios.mean()),
        std=float(ratios.std()) if len(ratios) > 1 else 0.0,
        median=median,
        q25=q25,
        q75=q75,
        share_above_one=float((ratios > 1).float().mean()),
    )
