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

Radiomics proper: every patient is scanned in two **phases**. ``images`` is
the arterial phase, where every lesion enhances; ``delayed`` is a later phase
where each lesion keeps a random fraction of its enhancement (its retention,
uniform on :data:`RETENTION_RANGE`). A lesion that keeps less than half
**washes out**, a pattern radiologists weigh as suspicious. Only the two phases
together tell washout apart (the delayed brightness alone mixes a bright lesion
that washed out with a faint one that did not). With ``rule="washout"`` the
outcome from 60 on needs a lesion at the site *that washes out*.
:func:`lesion_radiomics` measures the lesion in the site's region (shape,
first-order and texture features of both phases, :mod:`minattn.apps.radiomics`);
:class:`CrossAttentionFusion` can read those features as extra tokens, and
:class:`RegionLateFusion` is the late-fusion baseline that sees them.

Shapes: images ``(B, 1, 48, 48)``, or ``(B, 2, 48, 48)`` with both phases;
image tokens ``(B, N, C)`` with ``N = 36`` (6 x 6 patches of 8 x 8 px); clinical
tokens ``(B, 4, C)``; the clinical vector ``(B, 7)``; radiomic features
``(B, F)``, one token each ``(B, F, C)``; logits ``(B,)``.
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
from . import radiomics as rf
from ._samples import SampleSet
from .training import History, count_parameters, fit

__all__ = [
    "AGE_THRESHOLD",
    "CLINICAL_TOKENS",
    "PHASES",
    "REGIONS",
    "RETENTION_RANGE",
    "RULES",
    "WASHOUT_BELOW",
    "ClinicalTokens",
    "Cohort",
    "CrossAttentionFusion",
    "ImageTokens",
    "LateFusion",
    "RadiomicTokens",
    "RegionLateFusion",
    "count_parameters",
    "evaluate",
    "lesion_radiomics",
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
PHASES = ("arterial", "delayed")
RULES = ("finding", "washout")
RETENTION_RANGE = (0.1, 0.9)  # the share of a lesion's enhancement left in the delayed phase, uniform
WASHOUT_BELOW = 0.5  # a lesion that keeps less than this share washes out
_PHASE_SEED = 104_729  # offsets the delayed phase's random stream, so the arterial phase is as without it
_HU_RANGE = (-2.0, 4.0)  # the images' range (HU / 100): the fixed histogram range of the radiomic features
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
        delayed: ``(n, 1, 48, 48)`` the delayed phase, same units as ``images``.
        masks: ``(n, 4, 48, 48)`` bool, each region's lesion segmentation (all False without one).
        retention: ``(n, 4)`` the share of enhancement each lesion keeps in the delayed phase, NaN
            where there is none; washout: ``(n, 4)`` bool, ``retention < WASHOUT_BELOW``.
        rule: which rule made the outcome (:data:`RULES`).
    """

    images: torch.Tensor
    age: torch.Tensor
    site: torch.Tensor
    sex: torch.Tensor
    lab: torch.Tensor
    lesions: torch.Tensor
    lesion_centres: torch.Tensor
    outcome: torch.Tensor
    delayed: torch.Tensor | None = None
    masks: torch.Tensor | None = None
    retention: torch.Tensor | None = None
    washout: torch.Tensor | None = None
    rule: str = "finding"

    @property
    def finding(self) -> torch.Tensor:
        """``(n,)`` bool: the region the exam points to holds a lesion."""
        return self.lesions[torch.arange(len(self)), self.site]

    @property
    def suspicious(self) -> torch.Tensor:
        """``(n,)`` bool: the region the exam points to holds a lesion that washes out."""
        return self.finding & self.washout[torch.arange(len(self)), self.site]

    def phases(self) -> torch.Tensor:
        """``(n, 2, 48, 48)``: both phases as channels (arterial, delayed), the input of two-phase models."""
        return torch.cat([self.images, self.delayed], dim=1)

    def site_masks(self) -> torch.Tensor:
        """``(n, 48, 48)`` bool: the segmentation of the lesion in the site's region (all False without one)."""
        return self.masks[torch.arange(len(self)), self.site]

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
    rule: str = "finding",
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

    The delayed phase shows the same anatomy with its own noise; each lesion adds
    ``contrast * retention`` there, the retention uniform on :data:`RETENTION_RANGE`.
    It comes from a second random stream, so ``images`` and every field above are
    the same whatever the delayed phase holds. ``rule="washout"`` replaces the
    finding by :attr:`Cohort.suspicious` (a lesion at the site that washes out) in
    the rule above; the random draws stay the same, so only ``outcome`` changes.

    Returns:
        :class:`Cohort`; the same seed gives the same cohort, bit for bit.
    """
    from ..data import insert_lesion, scale_hu

    check_int(n, "n", minimum=1)
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}; received {rule!r}")
    g = torch.Generator().manual_seed(int(seed))
    g_delayed = torch.Generator().manual_seed(int(seed) + _PHASE_SEED)
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
    delayed = torch.empty(n, 1, IMAGE_SIZE, IMAGE_SIZE)
    masks = torch.zeros(n, 4, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.bool)
    lesions = torch.rand(n, 4, generator=g) < lesion_probability
    centres = torch.full((n, 4, 2), float("nan"))
    retention = torch.full((n, 4), float("nan"))
    low, high = RETENTION_RANGE
    for i in range(n):
        image = base.clone()
        late = base.clone()
        for r in lesions[i].nonzero().squeeze(1).tolist():
            flat = int(candidates[r][torch.randint(0, candidates[r].numel(), (1,), generator=g)])
            jitter = torch.rand(2, generator=g) - 0.5  # sub-pixel centre
            centre = (flat // IMAGE_SIZE + float(jitter[0]), flat % IMAGE_SIZE + float(jitter[1]))
            radius = radius_range[0] + (radius_range[1] - radius_range[0]) * float(torch.rand((), generator=g))
            contrast = contrast_range[0] + (contrast_range[1] - contrast_range[0]) * float(torch.rand((), generator=g))
            image, masks[i, r] = insert_lesion(image, centre, radius, contrast)
            centres[i, r] = torch.tensor(centre)
            retention[i, r] = low + (high - low) * float(torch.rand((), generator=g_delayed))
            late = late + masks[i, r] * (contrast * float(retention[i, r]))
        image = image + noise_hu * torch.randn(image.shape, generator=g)
        images[i, 0] = scale_hu(image, 100.0, clip=(-200.0, 400.0))
        late = late + noise_hu * torch.randn(late.shape, generator=g_delayed)
        delayed[i, 0] = scale_hu(late, 100.0, clip=(-200.0, 400.0))
    age = 30.0 + 60.0 * torch.rand(n, generator=g)
    site = torch.randint(0, 4, (n,), generator=g)
    sex = (torch.rand(n, generator=g) < 0.5).float()
    lab = torch.randn(n, generator=g)
    washout = retention < WASHOUT_BELOW  # NaN (no lesion) compares False
    finding = lesions[torch.arange(n), site]
    if rule == "washout":
        finding = finding & washout[torch.arange(n), site]
    flipped = torch.rand(n, generator=g) < flip
    young_coin = torch.rand(n, generator=g) < young_rate  # drawn for everyone, used below the threshold only
    outcome = torch.where(age >= age_threshold, finding ^ flipped, young_coin).float()
    return Cohort(images, age, site, sex, lab, lesions, centres, outcome, delayed, masks, retention, washout, rule)


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
    :func:`make_cohort`; the cohort's ``rule`` is read from it), not learned:

    - ``"age"``: age alone (above the threshold, P = the chance that the
      site's region holds a lesion, blurred by the flips);
    - ``"age+count"``: age and the number of lesions, but not where they are:
      the best any position-blind image summary can do;
    - ``"age+finding"``: age and whether the site's region holds a lesion:
      the ceiling of the ``"finding"`` rule (only the flips and the young
      patients' coin remain);
    - ``"age+washout"``: age and whether the site's lesion washes out: the
      ceiling of the ``"washout"`` rule too.

    Under the ``"washout"`` rule a lesion counts only if it washes out, which
    each does with probability :func:`_washout_probability`; knowledge short of
    the washout multiplies the chance by it.
    """
    older = cohort.age >= age_threshold
    rule = getattr(cohort, "rule", "finding")
    washes = _washout_probability() if rule == "washout" else 1.0

    def given(p_lesion_at_site):
        return torch.where(older, flip + (1 - 2 * flip) * p_lesion_at_site, torch.full_like(cohort.age, young_rate))

    if knows == "age":
        return given(torch.full_like(cohort.age, lesion_probability * washes))
    if knows == "age+count":  # the site is one of 4 regions, lesions uniform
        return given(cohort.lesions.sum(1).float() / len(REGIONS) * washes)
    if knows == "age+finding":
        return given(cohort.finding.float() * washes)
    if knows == "age+washout":
        return given((cohort.suspicious if rule == "washout" else cohort.finding).float())
    raise ValueError(f"knows must be 'age', 'age+count', 'age+finding' or 'age+washout'; received {knows!r}")


def _washout_probability() -> float:
    """The chance that a lesion washes out: the share of :data:`RETENTION_RANGE` below :data:`WASHOUT_BELOW`."""
    low, high = RETENTION_RANGE
    return min(1.0, max(0.0, (WASHOUT_BELOW - low) / (high - low)))


def lesion_radiomics(cohort: Cohort) -> tuple[tuple[str, ...], torch.Tensor]:
    """Radiomic features of the lesion in the site's region, from its segmentation, ``(n, 33)``.

    The features of :func:`minattn.apps.radiomics.radiomic_features` (each slice is a one-voxel-thick
    volume, voxel size 1 px): the shape of the mask once, then the first-order and texture features
    on each phase (names prefixed ``"arterial "`` and ``"delayed "``), with a histogram range fixed
    to the images' range so that lesions compare. First comes ``present``: 1 where the site's region
    holds a lesion; the other features are 0 where it does not (there is nothing to measure).

    Returns:
        ``(names, features)``: 33 names and float32 ``(n, 33)``, not standardised
        (:func:`minattn.apps.radiomics.standardise` does that with the training set's statistics).
    """
    masks = cohort.site_masks()[:, None]  # (n, 1, 48, 48): a one-slice volume per patient
    present = masks.flatten(1).any(1)
    rows = present.nonzero().squeeze(1)  # only these have a lesion to measure
    names = ("present", *rf.SHAPE)
    features = [present.double()[:, None], torch.zeros(len(cohort), len(rf.SHAPE), dtype=torch.float64)]
    if len(rows):
        features[1][rows] = rf.shape_features(masks[rows])[1]
    for phase, images in zip(PHASES, (cohort.images, cohort.delayed)):
        names += tuple(f"{phase} {name}" for name in rf.FIRST_ORDER + rf.TEXTURE)
        values = torch.zeros(len(cohort), len(rf.FIRST_ORDER) + len(rf.TEXTURE), dtype=torch.float64)
        if len(rows):
            _, first = rf.first_order_features(images[rows], masks[rows], value_range=_HU_RANGE)
            _, texture = rf.texture_features(images[rows], masks[rows], value_range=_HU_RANGE)
            values[rows] = torch.cat([first, texture], dim=1)
        features.append(values)
    return names, torch.cat(features, dim=1).float()


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
    tokens are nonlinear features of their patch and its place. With
    ``channels=2`` each patch holds both phases (:meth:`Cohort.phases`).

    Shapes: ``(B, channels, 48, 48)`` -> ``(B, 36, C)``.
    """

    def __init__(self, dim: int = 32, position: str = "sincos", channels: int = 1):
        super().__init__()
        self.channels = check_int(channels, "channels", minimum=1)
        self.embed = PatchEmbed((PATCH, PATCH), channels, dim)
        if position == "sincos":
            self.register_buffer("position", sincos_position(GRID, dim))
        elif position == "learned":
            self.position = nn.Parameter(torch.randn(GRID * GRID, dim) * 0.02)
        else:
            raise ValueError(f"position must be 'sincos' or 'learned'; received {position!r}")
        self.mlp = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or tuple(images.shape[1:]) != (self.channels, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(
                f"images must have shape (B, {self.channels}, {IMAGE_SIZE}, {IMAGE_SIZE}); "
                f"received {tuple(images.shape)}"
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


class RadiomicTokens(nn.Module):
    """Radiomic features -> one token each, ``(B, F)`` -> ``(B, F, C)``.

    Like a numeric clinical variable: feature ``f`` with value ``x`` becomes
    ``x * a_f + b_f`` with its own learned ``a_f, b_f`` (which also tells the
    tokens apart). Pass standardised features (:func:`minattn.apps.radiomics.standardise`).
    """

    def __init__(self, features: int, dim: int = 32):
        super().__init__()
        self.features = check_int(features, "features", minimum=1)
        self.scale = nn.Parameter(torch.randn(features, dim) * 0.02)
        self.shift = nn.Parameter(torch.randn(features, dim) * 0.02)

    def forward(self, radiomics: torch.Tensor) -> torch.Tensor:
        if radiomics.ndim != 2 or radiomics.shape[1] != self.features:
            raise ValueError(
                f"radiomics must have shape (B, {self.features}) (one value per feature); "
                f"received {tuple(radiomics.shape)}"
            )
        return radiomics[:, :, None] * self.scale + self.shift


def _check_radiomics(model: nn.Module, radiomics: torch.Tensor | None) -> None:
    if model.radiomic_features and radiomics is None:
        raise ValueError(f"this model reads {model.radiomic_features} radiomic features: pass radiomics (B, F)")
    if not model.radiomic_features and radiomics is not None:
        raise ValueError("this model was built without radiomic features (radiomic_features=0); do not pass radiomics")


class LateFusion(nn.Module):
    """Pool the image tokens, append the clinical vector, MLP.

    ``forward(images, clinical)``: ``(B, 1, 48, 48)``, ``(B, 7)`` -> logits ``(B,)``.
    """

    channels, radiomic_features = 1, 0  # reads the first phase only, no radiomics

    def __init__(self, dim: int = 32, hidden: int = 128):
        super().__init__()
        self.image = ImageTokens(dim)
        self.head = nn.Sequential(
            nn.Linear(dim + 7, hidden), nn.GELU(), nn.Linear(hidden, hidden // 2), nn.GELU(), nn.Linear(hidden // 2, 1)
        )

    def forward(self, images: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        pooled = self.image(images).mean(dim=1)  # (B, C): made before the clinical data are seen
        return self.head(torch.cat([pooled, clinical], dim=1)).squeeze(-1)


class RegionLateFusion(nn.Module):
    """Late fusion that sees the region: one prediction per source, combined at the decision level.

    Three branches each give a logit: the radiomic features of the lesion in the
    site's region (an MLP), the clinical vector (an MLP) and the pooled image
    tokens of ``channels`` phases (an MLP). A small MLP on the three logits makes
    the decision, so the sources meet only as finished opinions; all train together.
    The region comes from the segmentation behind the radiomic features, not from
    the model.

    ``forward(images, clinical, radiomics)``: ``(B, channels, 48, 48)``, ``(B, 7)``,
    ``(B, F)`` -> logits ``(B,)``.
    """

    def __init__(self, dim: int = 32, hidden: int = 64, channels: int = 2, radiomic_features: int = 33):
        super().__init__()
        self.channels = channels
        self.radiomic_features = check_int(radiomic_features, "radiomic_features", minimum=1)
        self.image = ImageTokens(dim, channels=channels)

        def branch(width):
            return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, 1))

        self.image_head, self.clinical_head = branch(dim), branch(7)
        self.radiomics_head = branch(radiomic_features)
        self.decide = nn.Sequential(nn.Linear(3, 16), nn.GELU(), nn.Linear(16, 1))

    def forward(self, images: torch.Tensor, clinical: torch.Tensor, radiomics: torch.Tensor | None = None):
        _check_radiomics(self, radiomics)
        if radiomics.ndim != 2 or radiomics.shape[1] != self.radiomic_features:
            raise ValueError(
                f"radiomics must have shape (B, {self.radiomic_features}); received {tuple(radiomics.shape)}"
            )
        if clinical.ndim != 2 or clinical.shape[1] != 7:
            raise ValueError(f"clinical must have shape (B, 7); received {tuple(clinical.shape)}")
        opinions = [
            self.image_head(self.image(images).mean(dim=1)),  # (B, 1) each
            self.clinical_head(clinical),
            self.radiomics_head(radiomics),
        ]
        return self.decide(torch.cat(opinions, dim=1)).squeeze(-1)


class CrossAttentionFusion(nn.Module):
    """Clinical tokens query the image tokens (and, optionally, the reverse).

    ``c = c + MHA(LN(c), LN(i), LN(i))``: each clinical token gathers from the
    image what it asks for. With ``bidirectional``, also
    ``i = i + MHA(LN(i), LN(c), LN(c))`` (image tokens read the clinical tokens),
    and the head sees the mean image token too. The head is an MLP on the
    clinical tokens laid side by side (so it knows which is which).

    With ``radiomic_features = F > 0``, each radiomic feature becomes a token
    (:class:`RadiomicTokens`) placed beside the image tokens: the clinical
    queries read keys and values ``[image tokens; radiomic tokens]``, ``36 + F``
    of them, so one softmax decides how much to read from the pixels and how
    much from the handcrafted measurements. ``channels=2`` reads both phases.

    ``forward(images, clinical, radiomics=None, return_weights=False)`` -> logits
    ``(B,)``, or ``(logits, weights)`` with ``weights["clinical_to_image"]``
    ``(B, h, 4, 36)``, with radiomics ``weights["clinical_to_radiomics"]``
    ``(B, h, 4, F)`` (then each query's weights sum to 1 over both together), and,
    if bidirectional, ``weights["image_to_clinical"]`` ``(B, h, 36, 4)``.
    """

    def __init__(
        self,
        dim: int = 32,
        heads: int = 2,
        hidden: int = 64,
        bidirectional: bool = False,
        channels: int = 1,
        radiomic_features: int = 0,
    ):
        super().__init__()
        self.bidirectional = bidirectional
        self.channels = channels
        self.radiomic_features = check_int(radiomic_features, "radiomic_features", minimum=0)
        self.image = ImageTokens(dim, channels=channels)
        if radiomic_features:
            self.radiomics = RadiomicTokens(radiomic_features, dim)
        self.clinical = ClinicalTokens(dim)
        self.norm_c, self.norm_i = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.clinical_reads_image = MultiHeadAttention(dim, heads)
        if bidirectional:
            self.norm_c2, self.norm_i2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
            self.image_reads_clinical = MultiHeadAttention(dim, heads)
        width = len(CLINICAL_TOKENS) * dim + (dim if bidirectional else 0)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(
        self,
        images: torch.Tensor,
        clinical: torch.Tensor,
        radiomics: torch.Tensor | None = None,
        return_weights: bool = False,
    ):
        _check_radiomics(self, radiomics)
        i = self.image(images)  # (B, N, C) keys and values
        c = self.clinical(clinical)  # (B, 4, C) queries
        context = i if radiomics is None else torch.cat([i, self.radiomics(radiomics)], dim=1)  # (B, N [+ F], C)
        read, to_context = self.clinical_reads_image(self.norm_c(c), self.norm_i(context), return_weights=True)
        n = i.shape[1]
        weights = {"clinical_to_image": to_context[..., :n]}  # (B, h, 4, N): each clinical query's weights
        if radiomics is not None:
            weights["clinical_to_radiomics"] = to_context[..., n:]  # (B, h, 4, F)
        parts = []
        if self.bidirectional:
            back, to_clinical = self.image_reads_clinical(self.norm_i2(i), self.norm_c2(c), return_weights=True)
            weights["image_to_clinical"] = to_clinical  # (B, h, N, 4)
            parts.append((i + back).mean(dim=1))
        c = c + read
        logits = self.head(torch.cat([c.flatten(1), *parts], dim=1)).squeeze(-1)
        return (logits, weights) if return_weights else logits


def make_model(kind: str, dim: int = 32, **kwargs) -> nn.Module:
    """``"late"`` -> :class:`LateFusion`, ``"cross"`` -> :class:`CrossAttentionFusion`,
    ``"region-late"`` -> :class:`RegionLateFusion`."""
    if kind == "late":
        return LateFusion(dim, **kwargs)
    if kind == "cross":
        return CrossAttentionFusion(dim, **kwargs)
    if kind == "region-late":
        return RegionLateFusion(dim, **kwargs)
    raise ValueError(f"kind must be 'late', 'cross' or 'region-late'; received {kind!r}")


def _inputs(model: nn.Module, cohort: Cohort, radiomics: torch.Tensor | None) -> tuple:
    """The model's inputs for the whole cohort: ``(images, clinical)``, plus ``radiomics`` if it reads them.

    Images are the first phase ``(n, 1, 48, 48)``, or both ``(n, 2, 48, 48)`` for a two-channel model.
    """
    _check_radiomics(model, radiomics)
    images = cohort.images if model.channels == 1 else cohort.phases()
    if radiomics is None:
        return images, cohort.clinical_vector()
    if radiomics.ndim != 2 or radiomics.shape[0] != len(cohort):
        raise ValueError(
            f"radiomics must have shape ({len(cohort)}, F), one row per patient; received {tuple(radiomics.shape)}"
        )
    return images, cohort.clinical_vector(), radiomics


# -- Training and evaluation ----------------------------------------------------------------


def train_fusion(
    cohort: Cohort,
    kind: str,
    epochs: int = 30,
    batch_size: int = 64,
    lr: float = 3e-3,
    seed: int = 0,
    progress: bool = True,
    radiomics: torch.Tensor | None = None,
    **model_kwargs,
) -> tuple[nn.Module, History]:
    """Train a fusion model on ``cohort`` with a fixed budget (AdamW, ``epochs`` passes).

    Every kind gets the same data, order, optimiser, learning rate and number
    of steps (:func:`minattn.apps.training.fit`); only the architecture differs.
    The initial weights come from ``torch.manual_seed(seed)``, the order from ``seed + 1``.
    ``radiomics`` ``(n, F)`` (standardised, e.g. from :func:`lesion_radiomics`) gives
    the model ``radiomic_features=F``; ``channels=2`` in ``model_kwargs`` reads both phases.

    Returns:
        ``(model, history)``: the model in eval mode, and its
        :class:`~minattn.apps.training.History` (``epoch_losses``, ``seconds``, ``parameters``, ``steps``, ...).
    """
    if radiomics is not None:
        model_kwargs.setdefault("radiomic_features", radiomics.shape[-1])
    torch.manual_seed(seed)
    model = make_model(kind, **model_kwargs)
    inputs = _inputs(model, cohort, radiomics)

    def batch_loss(index: torch.Tensor) -> torch.Tensor:
        logits = model(*(x[index] for x in inputs))
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
def evaluate(model: nn.Module, cohort: Cohort, radiomics: torch.Tensor | None = None) -> dict:
    """Held-out AUC and accuracy, overall and for patients from ``AGE_THRESHOLD`` on.

    ``radiomics`` ``(n, F)``: the cohort's features, standardised like the training set's, for a
    model that reads them.

    Returns:
        dict with ``auc``, ``accuracy``, ``auc_older`` (age >= threshold, where
        the image decides) and ``probabilities (n,)``.
    """
    model.eval()
    probabilities = torch.sigmoid(model(*_inputs(model, cohort, radiomics)))
    labels = cohort.outcome.bool()
    older = cohort.age >= AGE_THRESHOLD
    return {
        "auc": roc_auc(probabilities, labels),
        "accuracy": binary_accuracy(probabilities, labels),
        "auc_older": roc_auc(probabilities[older], labels[older]),
        "probabilities": probabilities,
    }


@torch.no_grad()
def query_maps(model: CrossAttentionFusion, cohort: Cohort, radiomics: torch.Tensor | None = None) -> torch.Tensor:
    """Where each clinical query looks: ``(n, 4, GRID, GRID)``, weights averaged over heads.

    Row ``t`` of patient ``i`` is the attention of clinical token
    ``CLINICAL_TOKENS[t]`` over the 6 x 6 image tokens; each map sums to 1
    (less what went to the radiomic tokens, for a model that reads them).
    """
    if not isinstance(model, CrossAttentionFusion):
        raise ValueError(f"model must be a CrossAttentionFusion; received {type(model).__name__}")
    model.eval()
    _, weights = model(*_inputs(model, cohort, radiomics), return_weights=True)
    maps = weights["clinical_to_image"].mean(dim=1)  # (n, 4, N): the heads' average still sums to 1
    return maps.reshape(len(cohort), len(CLINICAL_TOKENS), GRID, GRID)
