"""Attention-based multiple-instance learning (Ilse, Tomczak & Welling, 2018).

A whole-slide image is far too large to label pixel by pixel; what a hospital
has is one label per slide ("tumour present"). Multiple-instance learning (MIL)
treats the slide as a **bag** of K patch **instances** with one bag label: the
bag is positive if at least one instance is, and nobody says which. A model
encodes every instance to a vector ``h_k`` and must pool the K vectors into one
bag vector before classifying. How it pools decides what it can learn:

- mean pooling averages: one positive among 16 instances is diluted 16 times;
- max pooling keeps, per feature, the largest instance: sharp, but each feature
  listens to one instance only and the gradient reaches one instance per feature;
- **attention pooling** learns a weight per instance,
  ``a_k = softmax_k(w^T tanh(V h_k))``, and sums ``z = sum_k a_k h_k``. The weights
  sum to one, like a softmax over keys, with a single learned query ``w``. Since the
  classifier only sees ``z``, training from bag labels alone pushes the weight
  onto the instances that decide the label: the weights become a map of where
  the model looked, a *microscope* that was never shown an instance label;
- the **gated** variant multiplies by a sigmoid gate,
  ``a_k = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k)))``: tanh alone is nearly
  linear around zero, the gate lets each hidden unit be switched on or off.

The data are synthetic but built on real anatomy: each bag is a 64 x 64 crop of
the real CT slice that pydicom ships (:func:`minattn.data.load_ct_slice`),
turned or flipped, cut into a 4 x 4 grid of 16 x 16 tiles (the instances). A
positive bag has 1 to 3 small bright nodules (:func:`minattn.data.insert_lesion`)
in soft tissue, each wholly inside one tile; the tile labels are hidden from
training and used only afterwards, to score the attention weights.

As in computational pathology, where tiles are encoded once by a frozen
pretrained network and only the MIL head is trained, each tile is first turned
into 15 numbers by a fixed filter bank (:func:`tile_features`); the trained
model is a small ``Linear + ReLU`` instance encoder, the pooling and a linear
bag classifier. It trains in about a second on a laptop CPU.

Shapes: tile features ``(B, K, F)``; instance features ``(B, K, M)``; pooling
weights ``(B, K)``; bag logits ``(B,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .._validate import check_int
from ..metrics import binary_accuracy, roc_auc
from ._samples import SampleSet
from .training import History, fit

__all__ = [
    "FEATURE_NAMES",
    "POOLINGS",
    "AttentionPool",
    "InstanceEncoder",
    "MILBags",
    "MILModel",
    "MaxPool",
    "MeanPool",
    "evaluate",
    "make_bags",
    "make_pool",
    "tile_features",
    "tile_image",
    "train_mil",
    "within_bag_auc",
]

POOLINGS = ("attention", "gated", "mean", "max")
_HU_SCALE = 500.0  # images enter the network as HU / 500: soft tissue ~0.1, bone ~1.5-2.3


# -- Data -----------------------------------------------------------------------------------


@dataclass
class MILBags(SampleSet):
    """A set of bags.

    Attributes:
        images: ``(n, 1, G*t, G*t)`` each bag as one image (HU / 500).
        instances: ``(n, K, 1, t, t)`` the same pixels cut into ``K = G*G`` tiles, row-major.
        features: ``(n, K, F)`` each tile through the frozen filter bank (:func:`tile_features`).
        bag_labels: ``(n,)`` float 0/1: 1 if any tile holds a nodule.
        instance_labels: ``(n, K)`` bool: the hidden tile labels.
        nodules: ``(n, 3, 3)`` float, per bag up to 3 rows ``(row, col, radius)`` in
            image pixels; unused rows are NaN.
        grid: tiles per side ``G``; ``tile``: tile side ``t`` in pixels.
    """

    images: torch.Tensor
    instances: torch.Tensor
    features: torch.Tensor
    bag_labels: torch.Tensor
    instance_labels: torch.Tensor
    nodules: torch.Tensor
    grid: int
    tile: int


def tile_image(images: torch.Tensor, tile: int) -> torch.Tensor:
    """Cut images into a bag of square tiles, row-major.

    Args:
        images: ``(n, C, H, W)`` with ``H`` and ``W`` multiples of ``tile``.
        tile: tile side in pixels.

    Returns:
        ``(n, (H/t)(W/t), C, t, t)``.
    """
    if images.ndim != 4 or images.shape[-1] % tile or images.shape[-2] % tile:
        raise ValueError(
            f"images must be (n, C, H, W) with H, W multiples of tile={tile}; received {tuple(images.shape)}"
        )
    return rearrange(images, "n c (gh t) (gw s) -> n (gh gw) c t s", t=tile, s=tile)


_SIGMAS = (1.0, 1.5, 2.0)  # blob scales in px: nodules of radius ~1.4 to 2.8 respond most
FEATURE_NAMES = tuple(
    f"{pool} {name}"
    for pool in ("max", "mean", "std")
    for name in (*(f"blob s={s:g}" for s in _SIGMAS), "edge", "intensity")
)


def _blur(images: torch.Tensor, sigmas) -> torch.Tensor:
    """Gaussian blurs at several sigmas in one separable pass: ``(n, 1, H, W)`` -> ``(n, S, H, W)``."""
    radius = math.ceil(3 * max(sigmas))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernels = torch.stack([torch.exp(-(x**2) / (2 * s * s)) for s in sigmas])
    kernels = (kernels / kernels.sum(1, keepdim=True)).to(images.dtype).to(images.device)
    padded = F.pad(images, (radius,) * 4, mode="reflect")
    rows = F.conv2d(padded, kernels[:, None, None, :])  # (n, S, H + 2r, W): blur along W
    return F.conv2d(rows, kernels[:, None, :, None], groups=len(sigmas))  # then along H, one kernel per map


@torch.no_grad()
def tile_features(images: torch.Tensor, tile: int) -> torch.Tensor:
    """A frozen filter bank: each tile -> ``F = 15`` numbers (see :data:`FEATURE_NAMES`).

    Real pathology MIL encodes tiles once with a frozen pretrained network and
    trains only the attention head on the stored features; this fixed bank
    plays that network's part, cheaply. Five maps per image:

    - three **blob** maps, differences of Gaussians ``G(s) - G(1.6 s)`` at
      ``s = 1, 1.5, 2`` px (a classical detector of bright spots of radius ~1.4 s),
    - an **edge** map, the gradient magnitude of ``G(1)``,
    - the **intensity**, ``G(1)``;

    then per tile the max, mean and standard deviation of each map.

    Args:
        images: ``(n, 1, H, W)``, H and W multiples of ``tile``.

    Returns:
        ``(n, K, 15)`` with ``K = (H / tile)(W / tile)`` tiles, row-major.
    """
    if images.ndim != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (n, 1, H, W); received {tuple(images.shape)}")
    sigmas = (*_SIGMAS, *(1.6 * s for s in _SIGMAS))
    blurred = _blur(images, sigmas)  # (n, 6, H, W)
    blobs = blurred[:, :3] - blurred[:, 3:]
    smooth = blurred[:, :1]
    dy, dx = torch.gradient(smooth, dim=(2, 3))
    maps = torch.cat([blobs, torch.sqrt(dx**2 + dy**2), smooth], dim=1)  # (n, 5, H, W)
    tiles = rearrange(maps, "n c (gh t) (gw s) -> n (gh gw) c (t s)", t=tile, s=tile)
    return torch.cat([tiles.amax(-1), tiles.mean(-1), tiles.std(-1)], dim=-1)


def make_bags(
    n_bags: int,
    seed: int = 0,
    grid: int = 4,
    tile: int = 16,
    positive_fraction: float = 0.5,
    max_nodules: int = 3,
    radius_range: tuple[float, float] = (1.5, 2.5),
    contrast_range: tuple[float, float] = (350.0, 550.0),
    noise_hu: float = 20.0,
    tissue_hu: tuple[float, float] = (-150.0, 250.0),
    image: torch.Tensor | None = None,
) -> MILBags:
    """Synthetic slide-like bags: crops of a real CT slice, some with small bright nodules.

    Each bag is a ``(grid*tile)^2`` crop of ``image`` (default: the pydicom CT
    slice) at a random place, turned by one of the 8 rotations/flips of the
    square, with Gaussian noise. A positive bag gets 1 to ``max_nodules``
    nodules (discs of radius ``radius_range`` px, ``contrast_range`` HU brighter
    than the tissue), centred in soft tissue (``tissue_hu``), each in a
    different tile and wholly inside it, so every tile label is exact. The
    nodules are dimmer than bone, which the crops also contain, and brighter
    than the slice's own small vessels: brightness alone or shape alone does
    not find them.

    Args:
        n_bags: number of bags; about ``positive_fraction`` of them positive.
        seed: the same seed gives the same bags, bit for bit.

    Returns:
        :class:`MILBags`.
    """
    from ..data import insert_lesion, load_ct_slice, scale_hu  # data pulls in pydicom lazily

    check_int(n_bags, "n_bags", minimum=1)
    if not 1 <= max_nodules <= min(3, grid * grid):
        raise ValueError(f"max_nodules must be in 1..{min(3, grid * grid)}; received {max_nodules}")
    ct = load_ct_slice() if image is None else image
    side = grid * tile
    if ct.ndim != 2 or min(ct.shape) < side:
        raise ValueError(f"image must be 2D (H, W) with both sides >= {side}; received {tuple(ct.shape)}")
    r_lo, r_hi = radius_range
    margin = math.ceil(r_hi) + 1  # nodule wholly inside its tile: its label belongs to one instance
    if tile - 2 * margin < 1:
        raise ValueError(f"tile {tile} is too small for nodules of radius up to {r_hi}")
    inside_tile = torch.zeros(tile, dtype=torch.bool)
    inside_tile[margin : tile - margin] = True
    interior = (inside_tile[:, None] & inside_tile[None, :]).repeat(grid, grid)  # (side, side)
    g = torch.Generator().manual_seed(int(seed))
    images = torch.empty(n_bags, 1, side, side)
    labels = torch.zeros(n_bags)
    instance_labels = torch.zeros(n_bags, grid * grid, dtype=torch.bool)
    nodules = torch.full((n_bags, 3, 3), float("nan"))
    for i in range(n_bags):
        top = int(torch.randint(0, ct.shape[0] - side + 1, (1,), generator=g))
        left = int(torch.randint(0, ct.shape[1] - side + 1, (1,), generator=g))
        crop = ct[top : top + side, left : left + side].float()
        turn = int(torch.randint(0, 8, (1,), generator=g))
        crop = torch.rot90(crop, turn % 4, (0, 1))
        if turn >= 4:
            crop = crop.flip(1)
        if float(torch.rand((), generator=g)) < positive_fraction:
            # Nodules grow in soft tissue: centres only where the crop is tissue, not air or bone,
            # and far enough from the tile's border that the whole disc stays in its tile.
            allowed = (crop >= tissue_hu[0]) & (crop <= tissue_hu[1]) & interior
            per_tile = tile_image(allowed[None, None], tile)[0].flatten(1)  # (K, t*t)
            eligible = per_tile.any(1).nonzero().squeeze(1)
            count = min(int(torch.randint(1, max_nodules + 1, (1,), generator=g)), eligible.numel())
            tiles = eligible[torch.randperm(eligible.numel(), generator=g)[:count]]
            for j, t in enumerate(tiles.tolist()):
                spots = per_tile[t].nonzero().squeeze(1)
                spot = int(spots[torch.randint(0, spots.numel(), (1,), generator=g)])
                row = (t // grid) * tile + spot // tile + float(torch.rand((), generator=g)) - 0.5
                col = (t % grid) * tile + spot % tile + float(torch.rand((), generator=g)) - 0.5
                radius = r_lo + (r_hi - r_lo) * float(torch.rand((), generator=g))
                contrast = contrast_range[0] + (contrast_range[1] - contrast_range[0]) * float(
                    torch.rand((), generator=g)
                )
                crop, _ = insert_lesion(crop, (row, col), radius, contrast)
                instance_labels[i, t] = True
                nodules[i, j] = torch.tensor([row, col, radius])
            labels[i] = float(count > 0)  # a crop of only air and bone (rare) stays negative
        crop = crop + noise_hu * torch.randn(crop.shape, generator=g)
        images[i, 0] = scale_hu(crop, _HU_SCALE)
    features = tile_features(images, tile)
    return MILBags(images, tile_image(images, tile), features, labels, instance_labels, nodules, grid, tile)


# -- Model ----------------------------------------------------------------------------------


class InstanceEncoder(nn.Module):
    """The trainable part of the instance encoder: standardise, then ``Linear + ReLU``.

    The frozen filter bank (:func:`tile_features`) has already turned each
    tile into ``F`` numbers; this layer learns which combinations of them make
    a useful instance feature ``h``. The standardisation constants are fitted
    on the training bags (:meth:`fit`), not learned.

    Shapes: ``(..., F)`` -> ``(..., M)``.
    """

    def __init__(self, in_features: int = len(FEATURE_NAMES), dim: int = 32):
        super().__init__()
        self.in_features = in_features
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.linear = nn.Linear(in_features, dim)

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> InstanceEncoder:
        """Set the standardisation from training features ``(..., F)``."""
        flat = features.reshape(-1, self.in_features)
        self.mean.copy_(flat.mean(0))
        self.std.copy_(flat.std(0).clamp_min(1e-6))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"tile features must have shape (..., {self.in_features}); received {tuple(x.shape)}")
        return torch.relu(self.linear((x - self.mean) / self.std))


def _check_bag(h: torch.Tensor, dim: int, mask: torch.Tensor | None) -> torch.Tensor:
    if not isinstance(h, torch.Tensor) or h.ndim != 3 or h.shape[-1] != dim:
        raise ValueError(f"instance features must have shape (B, K, {dim}); received {tuple(getattr(h, 'shape', ()))}")
    if mask is None:
        return torch.ones(h.shape[:2], dtype=torch.bool, device=h.device)
    if mask.shape != h.shape[:2] or mask.dtype != torch.bool:
        raise ValueError(
            f"mask must be bool of shape {tuple(h.shape[:2])} (B, K); received {mask.dtype} {tuple(mask.shape)}"
        )
    if not bool(mask.any(dim=1).all()):
        raise ValueError("every bag needs at least one real instance (a mask row is all False)")
    return mask


class AttentionPool(nn.Module):
    """Attention pooling of a bag: ``z = sum_k a_k h_k``.

    Plain: ``a = softmax_k(w^T tanh(V h_k))``; gated:
    ``a = softmax_k(w^T (tanh(V h_k) * sigmoid(U h_k)))``.

    Args:
        dim: instance features M.
        hidden: width L of the scoring network.
        gated: use the sigmoid gate.

    ``forward(h, mask=None)``: ``h (B, K, M)``, optional ``mask (B, K)`` bool
    (True = real instance; padded slots get weight 0, so bags of different
    sizes can share a batch). Returns ``(z (B, M), a (B, K))``.
    """

    def __init__(self, dim: int, hidden: int = 16, gated: bool = False):
        super().__init__()
        self.dim, self.gated = dim, gated
        self.V = nn.Linear(dim, hidden)
        self.U = nn.Linear(dim, hidden) if gated else None
        self.w = nn.Linear(hidden, 1, bias=False)  # a bias would add the same to every score: softmax ignores it

    def scores(self, h: torch.Tensor) -> torch.Tensor:
        """Unnormalised scores ``(B, K)``, before the softmax over the bag."""
        hidden = torch.tanh(self.V(h))
        if self.gated:
            hidden = hidden * torch.sigmoid(self.U(h))
        return self.w(hidden).squeeze(-1)

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None):
        mask = _check_bag(h, self.dim, mask)
        scores = self.scores(h).masked_fill(~mask, float("-inf"))
        a = torch.softmax(scores, dim=1)  # over the instances of each bag
        return torch.einsum("bk,bkm->bm", a, h), a


class MeanPool(nn.Module):
    """Mean pooling, the baseline: every instance weighs ``1 / K``. Same interface as :class:`AttentionPool`."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None):
        mask = _check_bag(h, self.dim, mask)
        a = mask.to(h.dtype) / mask.sum(dim=1, keepdim=True)
        return torch.einsum("bk,bkm->bm", a, h), a


class MaxPool(nn.Module):
    """Max pooling over instances, per feature. Its "weights" ``(B, K)`` are the
    fraction of the M features each instance supplies (they too sum to one)."""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, h: torch.Tensor, mask: torch.Tensor | None = None):
        mask = _check_bag(h, self.dim, mask)
        z, winner = h.masked_fill(~mask[..., None], float("-inf")).max(dim=1)  # (B, M), (B, M)
        a = F.one_hot(winner, h.shape[1]).to(h.dtype).mean(dim=1)  # (B, K)
        return z, a


def make_pool(pooling: str, dim: int, hidden: int = 16) -> nn.Module:
    """The pooling module for a name in :data:`POOLINGS`."""
    if pooling == "attention":
        return AttentionPool(dim, hidden)
    if pooling == "gated":
        return AttentionPool(dim, hidden, gated=True)
    if pooling == "mean":
        return MeanPool(dim)
    if pooling == "max":
        return MaxPool(dim)
    raise ValueError(f"pooling must be one of {POOLINGS}; received {pooling!r}")


class MILModel(nn.Module):
    """Instance encoder -> pooling -> linear bag classifier.

    Args:
        pooling: one of :data:`POOLINGS`.
        in_features: tile features F from the frozen bank.
        dim: instance features M.
        hidden: width L of the attention scorer.

    ``forward(features, mask=None)``: ``features (B, K, F)`` ->
    ``(logits (B,), weights (B, K))``.
    """

    def __init__(
        self, pooling: str = "attention", in_features: int = len(FEATURE_NAMES), dim: int = 32, hidden: int = 16
    ):
        super().__init__()
        self.pooling = pooling
        self.encoder = InstanceEncoder(in_features, dim)
        self.pool = make_pool(pooling, dim, hidden)
        self.classifier = nn.Linear(dim, 1)

    def forward(self, features: torch.Tensor, mask: torch.Tensor | None = None):
        if features.ndim != 3:
            raise ValueError(f"features must have shape (B, K, F); received {tuple(features.shape)}")
        z, a = self.pool(self.encoder(features), mask)
        return self.classifier(z).squeeze(-1), a

    def instance_scores(self, features: torch.Tensor) -> torch.Tensor:
        """The bag classifier applied to each instance alone: ``(B, K)`` logits."""
        return self.classifier(self.encoder(features)).squeeze(-1)

    def attention_scores(self, features: torch.Tensor) -> torch.Tensor:
        """Attention pooling's scores before the softmax, ``(B, K)`` (attention poolings only)."""
        if not isinstance(self.pool, AttentionPool):
            raise ValueError(f"{self.pooling} pooling has no attention scores")
        return self.pool.scores(self.encoder(features))


# -- Training and evaluation ----------------------------------------------------------------


def train_mil(
    bags: MILBags,
    pooling: str = "attention",
    epochs: int = 30,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
    dim: int = 32,
    hidden: int = 16,
) -> tuple[MILModel, History]:
    """Train a :class:`MILModel` from the bag labels alone (the tile labels are never read).

    Adam on the binary cross-entropy of the bag logits, mini-batches of
    ``batch_size`` bags in a seeded random order (:func:`minattn.apps.training.fit`);
    the encoder's standardisation is fitted on ``bags`` first. The initial
    weights come from ``torch.manual_seed(seed)``, the order from ``seed + 1``.

    Returns:
        ``(model, history)``: the model in eval mode, and its
        :class:`~minattn.apps.training.History` (``epoch_losses``, ``seconds``, ``parameters``, ...).
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}; received {pooling!r}")
    torch.manual_seed(seed)  # the initial weights
    model = MILModel(pooling, bags.features.shape[-1], dim=dim, hidden=hidden)
    model.encoder.fit(bags.features)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        logits, _ = model(bags.features[index])
        return F.binary_cross_entropy_with_logits(logits, bags.bag_labels[index])

    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    history = fit(
        model,
        batch_loss,
        len(bags),
        optimiser,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed + 1,
        progress=progress,
        description=f"{pooling} pooling",
    )
    return model, history


def within_bag_auc(scores: torch.Tensor, instance_labels: torch.Tensor) -> float:
    """Mean over the bags that hold both kinds of instance of the AUC inside each bag.

    Args:
        scores: ``(n, K)``; instance_labels: ``(n, K)`` bool.
    """
    aucs = [roc_auc(s, y) for s, y in zip(scores, instance_labels) if 0 < int(y.sum()) < y.numel()]
    if not aucs:
        raise ValueError("no bag holds both positive and negative instances")
    return sum(aucs) / len(aucs)


@torch.no_grad()
def evaluate(model: MILModel, bags: MILBags) -> dict:
    """Bag-level accuracy and AUC, and instance-level AUCs against the hidden tile labels.

    Returns:
        dict with
        ``bag_accuracy`` (threshold 0.5 on the probability), ``bag_auc``;
        ``instance_auc`` the pooling weights as instance scores, all test tiles
        together (mean pooling gives every tile the same weight: 0.5);
        ``instance_auc_within`` the same inside each positive bag, averaged
        (weights are relative to their bag, so this is their fairer test);
        ``top_tile_hit`` the fraction of positive bags whose heaviest tile holds a nodule;
        ``instance_auc_classifier`` the bag classifier applied to each tile alone;
        and ``probabilities (n,)``, ``weights (n, K)``.
    """
    model.eval()
    logits, weights = model(bags.features)
    probabilities = torch.sigmoid(logits)
    labels = bags.bag_labels.bool()
    heaviest = weights.argmax(dim=1)  # ties (mean pooling) go to the first tile
    hits = bags.instance_labels[torch.arange(len(bags)), heaviest][labels]
    return {
        "bag_accuracy": binary_accuracy(probabilities, labels),
        "bag_auc": roc_auc(probabilities, labels),
        "instance_auc": roc_auc(weights, bags.instance_labels),
        "instance_auc_within": within_bag_auc(weights, bags.instance_labels),
        "top_tile_hit": float(hits.double().mean()),
        "instance_auc_classifier": roc_auc(model.instance_scores(bags.features), bags.instance_labels),
        "probabilities": probabilities,
        "weights": weights,
    }
