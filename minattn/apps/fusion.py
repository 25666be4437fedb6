"""Attention as a fusion engine: clinical variables read the image through cross-attention.

Radiomics rarely decides from the image alone: age, sex, lab values and the
clinical exam change what a finding means. Two ways to combine them:

- **late fusion**: summarise the image into one vector (pool its tokens),
  append the clinical vector, and let an MLP combine them. The image summary
  is made *before* the clinical data are seen, so it must already contain
  everything any patient might need;
- **cross-attention fusion**: each clinical variable becomes a token, and the
  clinical tokens are the *queries* of a :class:`minattn.MultiHeadAttention`
  whose keys and values are the image tokens. A query built from "the exam
  points to the left posterior region" can look *there*: what is read from the
  image depends on the patient. The reverse direction (image tokens as queries,
  clinical tokens as keys and values) lets every image token be re-read in the
  light of the clinical data.

The synthetic cohort (:func:`make_cohort`) is built so that this matters. Each
patient has an axial abdominal slice of minattn's CT phantom, 48 x 48 px, with
a small enhancing lesion in each of four regions independently with
probability 1/2, and clinical variables: age, the region the clinical exam
points to (``site``), sex and a lab value. The outcome depends on an
**interaction**: from age 60 on, it is positive when the region the exam points
to holds a lesion (5 % of labels flipped); below 60 it is a coin with
probability 0.3, whatever the image shows. Sex and the lab value are noise.
Lesions elsewhere are decoys: "any lesion" predicts much less than "a lesion
where the exam points".

Shapes: images ``(B, 1, 48, 48)``; image tokens ``(B, N, C)`` with ``N = 36``
(6 x 6 patches of 8 x 8 px); clinical tokens ``(B, 4, C)``; the clinical
vector ``(B, 7)``; logits ``(B,)``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_int
from ..metrics import binary_accuracy, roc_auc
from ..multihead import MultiHeadAttention
from ..patches import PatchEmbed
from ._samples import SampleSet
from .training import History, count_parameters, fit

__all__ = [
    "AGE_THRESHOLD",
    "CLINICAL_TOKENS",
    "REGIONS",
    "ClinicalTokens",
    "Cohort",
    "CrossAttentionFusion",
    "ImageTokens",
    "LateFusion",
    "count_parameters",
    "evaluate",
    "make_cohort",
    "make_model",
    "query_maps",
    "reference_probabilities",
    "region_of_tokens",
    "sincos_position",
    "train_fusion",
]

REGIONS = ("anterior right", "anterior left", "posterior right", "posterior left")
CLINICAL_TOKENS = ("age", "site", "sex", "lab")
AGE_THRESHOLD = 60.0
IMAGE_SIZE, PATCH = 48, 8
GRID = IMAGE_SIZE // PATCH  # 6 x 6 image tokens
_AGE_MEAN, _AGE_STD = 60.0, 17.3  # ages are uniform on [30, 90): mean 60, sd 60 / sqrt(12)


@functools.lru_cache(maxsize=1)
def _base_slice() -> torch.Tensor:
    """An abdominal slice of the phantom (liver, kidneys, spine), ``(48, 48)`` HU, no noise."""
    from ..data import phantom

    # A taller grid, then a square crop: the body's ellipse fills the 48 x 48 image instead of floating in air.
    volume, _ = phantom((16, 64, IMAGE_SIZE), lesions=0, seed=0, noise_hu=0.0)
    return volume[10, 8 : 8 + IMAGE_SIZE].clone()


def region_of_tokens(grid: int = GRID) -> torch.Tensor:
    """The region index (see :data:`REGIONS`) of each image token, ``(grid * grid,)`` row-major.

    Rows in the top half are anterior, columns in the left half are the
    patient's right (the radiological convention: the patient faces you).
    """
    rows = torch.arange(grid).repeat_interleave(grid)
    cols = torch.arange(grid).repeat(grid)
    return (rows >= grid // 2).long() * 2 + (cols >= grid // 2).long()


@dataclass
class Cohort(SampleSet):
    """A synthetic cohort.

    Attributes:
        images: ``(n, 1, 48, 48)`` float, HU / 100 (clipped to [-200, 400] HU).
        age: ``(n,)`` years; site: ``(n,)`` long, 0-3, an index into :data:`REGIONS`;
        sex: ``(n,)`` 0/1; lab: ``(n,)`` a standardised lab value (noise).
        lesions: ``(n, 4)`` bool, a lesion in each region.
        lesion_centres: ``(n, 4, 2)`` (row, col) px, NaN where there is none.
        outcome: ``(n,)`` float 0/1.
    """

    images: torch.Tensor
    age: torch.Tensor
    site: torch.Tensor
    sex: torch.Tensor
    lab: torch.Tensor
    lesions: torch.Tensor
    lesion_centres: torch.Tensor
    outcome: torch.Tensor

    @property
    def finding(self) -> torch.Tensor:
        """``(n,)`` bool: the region the exam points to holds a lesion."""
        return self.lesions[torch.arange(len(self)), self.site]

    def clinical_vector(self) -> torch.Tensor:
        """``(n, 7)``: standardised age, the site one-hot (4), sex, lab: late fusion's input."""
        return torch.cat(
            [
                ((self.age - _AGE_MEAN) / _AGE_STD)[:, None],
                F.one_hot(self.site, len(REGIONS)).float(),
                self.sex[:, None],
                self.lab[:, None],
            ],
            dim=1,
        )


def make_cohort(
    n: int,
    seed: int = 0,
    lesion_probability: float = 0.5,
    age_threshold: float = AGE_THRESHOLD,
    young_rate: float = 0.3,
    flip: float = 0.05,
    contrast_range: tuple[float, float] = (150.0, 250.0),
    radius_range: tuple[float, float] = (2.5, 3.5),
    noise_hu: float = 10.0,
) -> Cohort:
    """Draw a synthetic cohort whose outcome needs an image x clinical interaction.

    For each patient: each of the four regions gets an enhancing lesion with
    probability ``lesion_probability`` (a disc ``contrast_range`` HU brighter,
    centred in soft tissue of that region, at least ``radius + 1`` px from the
    region's borders so that the disc stays in its region); age is uniform on [30, 90); the exam points to a uniformly
    chosen region (``site``); sex is a fair coin; the lab value is standard
    normal. Outcome: if ``age >= age_threshold``, the finding (a lesion in the
    site's region) with a fraction ``flip`` of labels flipped; otherwise a coin
    with probability ``young_rate``, drawn independently of the image.

    Returns:
        :class:`Cohort`; the same seed gives the same cohort, bit for bit.
    """
    from ..data import insert_lesion, scale_hu

    check_int(n, "n", minimum=1)
    g = torch.Generator().manual_seed(int(seed))
    base = _base_slice()
    half = IMAGE_SIZE // 2
    margin = math.ceil(radius_range[1]) + 1
    # Where a lesion centre may go in each region: soft tissue (not air, fat, bone), away from region borders.
    tissue = (base > -50) & (base < 150)
    ys, xs = torch.meshgrid(torch.arange(IMAGE_SIZE), torch.arange(IMAGE_SIZE), indexing="ij")
    away = ((ys - half + 0.5).abs() >= margin) & ((xs - half + 0.5).abs() >= margin)
    region_map = (ys >= half).long() * 2 + (xs >= half).long()
    candidates = [((region_map == r) & tissue & away).reshape(-1).nonzero().squeeze(1) for r in range(4)]
    if any(c.numel() == 0 for c in candidates):  # pragma: no cover - the phantom always has tissue in each region
        raise RuntimeError("a region of the phantom slice has no soft tissue")

    images = torch.empty(n, 1, IMAGE_SIZE, IMAGE_SIZE)
    lesions = torch.rand(n, 4, generator=g) < lesion_probability
    centres = torch.full((n, 4, 2), float("nan"))
    for i in range(n):
        image = base.clone()
        for r in lesions[i].nonzero().squeeze(1).tolist():
            flat = int(candidates[r][torch.randint(0, candidates[r].numel(), (1,), generator=g)])
            jitter = torch.rand(2, generator=g) - 0.5  # sub-pixel centre
            centre = (flat // IMAGE_SIZE + float(jitter[0]), flat % IMAGE_SIZE + float(jitter[1]))
            radius = radius_range[0] + (radius_range[1] - radius_range[0]) * float(torch.rand((), generator=g))
            contrast = contrast_range[0] + (contrast_range[1] - contrast_range[0]) * float(torch.rand((), generator=g))
            image, _ = insert_lesion(image, centre, radius, contrast)
            centres[i, r] = torch.tensor(centre)
        image = image + noise_hu * torch.randn(image.shape, generator=g)
        images[i, 0] = scale_hu(image, 100.0, clip=(-200.0, 400.0))
    age = 30.0 + 60.0 * torch.rand(n, generator=g)
    site = torch.randint(0, 4, (n,), generator=g)
    sex = (torch.rand(n, generator=g) < 0.5).float()
    lab = torch.randn(n, generator=g)
    finding = lesions[torch.arange(n), site]
    flipped = torch.rand(n, generator=g) < flip
    young_coin = torch.rand(n, generator=g) < young_rate  # drawn for everyone, used below the threshold only
    outcome = torch.where(age >= age_threshold, finding ^ flipped, young_coin).float()
    return Cohort(images, age, site, sex, lab, lesions, centres, outcome)


def reference_probabilities(
    cohort: Cohort,
    knows: str,
    lesion_probability: float = 0.5,
    age_threshold: float = AGE_THRESHOLD,
    young_rate: float = 0.3,
    flip: float = 0.05,
) -> torch.Tensor:
    """The best possible P(outcome) for a model that knows only part of each patient, ``(n,)``.

    Computed from the generator's rules (pass the same parameters as to
    :func:`make_cohort`), not learned:

    - ``"age"``: age alone (above the threshold, P = the chance that the
      site's region holds a lesion, blurred by the flips);
    - ``"age+count"``: age and the number of lesions, but not where they are:
      the best any position-blind image summary can do;
    - ``"age+finding"``: age and whether the site's region holds a lesion:
      the ceiling (only the flips and the young patients' coin remain).
    """
    older = cohort.age >= age_threshold

    def given(p_lesion_at_site):
        return torch.where(older, flip + (1 - 2 * flip) * p_lesion_at_site, torch.full_like(cohort.age, young_rate))

    if knows == "age":
        return given(torch.full_like(cohort.age, lesion_probability))
    if knows == "age+count":
        return given(cohort.lesions.sum(1).float() / len(REGIONS))  # the site is one of 4 regions, lesions uniform
    if knows == "age+finding":
        return given(cohort.finding.float())
    raise ValueError(f"knows must be 'age', 'age+count' or 'age+finding'; received {knows!r}")


# -- Models ---------------------------------------------------------------------------------


def sincos_position(grid: int, dim: int) -> torch.Tensor:
    """Fixed 2D sine-cosine position codes, ``(grid * grid, dim)`` row-major (as in ViT/MAE).

    Half the features encode the row, half the column, each as sines and
    cosines of the coordinate at ``dim / 4`` frequencies.
    """
    if dim % 4:
        raise ValueError(f"dim must be a multiple of 4 for 2D sine-cosine codes; received {dim}")
    quarter = dim // 4
    frequencies = 1.0 / (grid ** (torch.arange(quarter, dtype=torch.float64) / quarter))
    rows = torch.arange(grid, dtype=torch.float64).repeat_interleave(grid)
    cols = torch.arange(grid, dtype=torch.float64).repeat(grid)
    parts = []
    for coordinate in (rows, cols):
        angles = coordinate[:, None] * frequencies[None, :] * math.pi / 2
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1).float()


class ImageTokens(nn.Module):
    """Image -> tokens, shared by both fusion models.

    :class:`minattn.PatchEmbed` (8 x 8 px patches), plus a position code
    (without one, no model could tell the regions apart): fixed 2D sines and
    cosines by default (:func:`sincos_position`), or learned with
    ``position="learned"``; then a token-wise MLP with a residual, so the
    tokens are nonlinear features of their patch and its place.

    Shapes: ``(B, 1, 48, 48)`` -> ``(B, 36, C)``.
    """

    def __init__(self, dim: int = 32, position: str = "sincos"):
        super().__init__()
        self.embed = PatchEmbed((PATCH, PATCH), 1, dim)
        if position == "sincos":
            self.register_buffer("position", sincos_position(GRID, dim))
        elif position == "learned":
            self.position = nn.Parameter(torch.randn(GRID * GRID, dim) * 0.02)
        else:
            raise ValueError(f"position must be 'sincos' or 'learned'; received {position!r}")
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != (1, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"images must have shape (B, 1, {IMAGE_SIZE}, {IMAGE_SIZE}); received {tuple(images.shape)}"
            )
        x = self.embed(images) + self.position  # (B, N, C)
        return x + self.mlp(x)


class ClinicalTokens(nn.Module):
    """Clinical variables -> one token each, ``(B, 7)`` -> ``(B, 4, C)``.

    A number (age, lab) becomes ``value * a + b`` with its own learned ``a, b``;
    a category (site, sex) looks up its own learned vector. Each variable
    having its own parameters is also what tells the tokens apart.
    """

    def __init__(self, dim: int = 32):
        super().__init__()
        self.age = nn.Linear(1, dim)
        self.site = nn.Embedding(len(REGIONS), dim)
        self.sex = nn.Embedding(2, dim)
        self.lab = nn.Linear(1, dim)

    def forward(self, clinical: torch.Tensor) -> torch.Tensor:
        if clinical.ndim != 2 or clinical.shape[1] != 7:
            raise ValueError(
                f"clinical must have shape (B, 7) (age, site one-hot x 4, sex, lab); received {tuple(clinical.shape)}"
            )
        site = clinical[:, 1:5].argmax(1)
        sex = clinical[:, 5].round().long().clamp(0, 1)
        tokens = [self.age(clinical[:, :1]), self.site(site), self.sex(sex), self.lab(clinical[:, 6:7])]
        return torch.stack(tokens, dim=1)


class LateFusion(nn.Module):
    """Pool the image tokens, append the clinical vector, MLP.

    ``forward(images, clinical)``: ``(B, 1, 48, 48)``, ``(B, 7)`` -> logits ``(B,)``.
    """

    def __init__(self, dim: int = 32, hidden: int = 128):
        super().__init__()
        self.image = ImageTokens(dim)
        self.head = nn.Sequential(
            nn.Linear(dim + 7, hidden), nn.GELU(), nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Linear(hidden // 2, 1)
        )

    def forward(self, images: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        pooled = self.image(images).mean(dim=1)  # (B, C): made before the clinical data are seen
        return self.head(torch.cat([pooled, clinical], dim=1)).squeeze(-1)


class CrossAttentionFusion(nn.Module):
    """Clinical tokens query the image tokens (and, optionally, the reverse).

    ``c = c + MHA(LN(c), LN(i), LN(i))``: each clinical token gathers from the
    image what it asks for. With ``bidirectional``, also
    ``i = i + MHA(LN(i), LN(c), LN(c))`` (image tokens read the clinical tokens),
    and the head sees the mean image token too. The head is an MLP on the
    clinical tokens laid side by side (so it knows which is which).

    ``forward(images, clinical, return_weights=False)`` -> logits ``(B,)``, or
    ``(logits, weights)`` with ``weights["clinical_to_image"]`` ``(B, h, 4, 36)``
    and, if bidirectional, ``weights["image_to_clinical"]`` ``(B, h, 36, 4)``.
    """

    def __init__(self, dim: int = 32, heads: int = 2, hidden: int = 64, bidirectional: bool = False):
        super().__init__()
        self.bidirectional = bidirectional
        self.image = ImageTokens(dim)
        self.clinical = ClinicalTokens(dim)
        self.norm_c, self.norm_i = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.clinical_reads_image = MultiHeadAttention(dim, heads)
        if bidirectional:
            self.norm_c2, self.norm_i2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.image_reads_clinical = MultiHeadAttention(dim, heads)
        width = len(CLINICAL_TOKENS) * dim + (dim if bidirectional else 0)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, images: torch.Tensor, clinical: torch.Tensor, return_weights: bool = False):
        i = self.image(images)  # (B, N, C) keys and values
        c = self.clinical(clinical)  # (B, 4, C) queries
        read, to_image = self.clinical_reads_image(self.norm_c(c), self.norm_i(i), return_weights=True)
        weights = {"clinical_to_image": to_image}  # (B, h, 4, N): each clinical query's weights over the image
        parts = []
        if self.bidirectional:
            back, to_clinical = self.image_reads_clinical(self.norm_i2(i), self.norm_c2(c), return_weights=True)
            weights["image_to_clinical"] = to_clinical  # (B, h, N, 4)
            parts.append((i + back).mean(dim=1))
        c = c + read
        logits = self.head(torch.cat([c.flatten(1), *parts], dim=1)).squeeze(-1)
        return (logits, weights) if return_weights else logits


def make_model(kind: str, dim: int = 32, **kwargs) -> nn.Module:
    """``"late"`` -> :class:`LateFusion`, ``"cross"`` -> :class:`CrossAttentionFusion`."""
    if kind == "late":
        return LateFusion(dim, **kwargs)
    if kind == "cross":
        return CrossAttentionFusion(dim, **kwargs)
    raise ValueError(f"kind must be 'late' or 'cross'; received {kind!r}")


# -- Training and evaluation ----------------------------------------------------------------


def train_fusion(
    cohort: Cohort,
    kind: str,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
    **model_kwargs,
) -> tuple[nn.Module, History]:
    """Train a fusion model on ``cohort`` with a fixed budget (AdamW, ``epochs`` passes).

    Both kinds get the same data, order, optimiser, learning rate and number
    of steps (:func:`minattn.apps.training.fit`); only the architecture differs.
    The initial weights come from ``torch.manual_seed(seed)``, the order from ``seed + 1``.

    Returns:
        ``(model, history)``: the model in eval mode, and its
        :class:`~minattn.apps.training.History` (``epoch_losses``, ``seconds``, ``parameters``, ``steps``, ...).
    """
    torch.manual_seed(seed)
    model = make_model(kind, **model_kwargs)
    clinical = cohort.clinical_vector()

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        logits = model(cohort.images[index], clinical[index])
        return F.binary_cross_entropy_with_logits(logits, cohort.outcome[index])

    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    history = fit(
        model,
        batch_loss,
        len(cohort),
        optimiser,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed + 1,
        progress=progress,
        description=f"{kind} fusion",
    )
    return model, history


@torch.no_grad()
def evaluate(model: nn.Module, cohort: Cohort) -> dict:
    """Held-out AUC and accuracy, overall and for patients from ``AGE_THRESHOLD`` on.

    Returns:
        dict with ``auc``, ``accuracy``, ``auc_older`` (age >= threshold, where
        the image decides) and ``probabilities (n,)``.
    """
    model.eval()
    probabilities = torch.sigmoid(model(cohort.images, cohort.clinical_vector()))
    labels = cohort.outcome.bool()
    older = cohort.age >= AGE_THRESHOLD
    return {
        "auc": roc_auc(probabilities, labels),
        "accuracy": binary_accuracy(probabilities, labels),
        "auc_older": roc_auc(probabilities[older], labels[older]),
        "probabilities": probabilities,
    }


@torch.no_grad()
def query_maps(model: CrossAttentionFusion, cohort: Cohort) -> torch.Tensor:
    """Where each clinical query looks: ``(n, 4, GRID, GRID)``, weights averaged over heads.

    Row ``t`` of patient ``i`` is the attention of clinical token
    ``CLINICAL_TOKENS[t]`` over the 6 x 6 image tokens; each map sums to 1.
    """
    if not isinstance(model, CrossAttentionFusion):
        raise ValueError(f"model must be a CrossAttentionFusion; received {type(model).__name__}")
    model.eval()
    _, weights = model(cohort.images, cohort.clinical_vector(), return_weights=True)
    maps = weights["clinical_to_image"].mean(dim=1)  # (n, 4, N): the heads' average still sums to 1
    return maps.reshape(len(cohort), len(CLINICAL_TOKENS), GRID, GRID)
