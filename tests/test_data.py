"""Offline data: the phantom, lesions, and the real images that ship in wheels."""

import socket

import pytest
import torch

from minattn import data
from minattn.data import Lesion, insert_lesion, lesion_mask, load_ct_slice, load_mni152, phantom, random_lesions


def test_phantom_shapes_dtypes_and_tissues():
    vol, labels = phantom((32, 40, 48), lesions=3, seed=1)
    assert vol.shape == labels.shape == (32, 40, 48)
    assert vol.dtype == torch.float32 and labels.dtype == torch.long
    assert set(labels.unique().tolist()) <= {0, 1, 2, 3} and (labels > 0).any()
    # air in the corners, bone somewhere, lungs somewhere
    assert vol[0, 0, 0] < -900
    assert (vol > 500).any() and ((vol > -900) & (vol < -700)).any()


def test_phantom_is_deterministic_for_a_seed_and_differs_between_seeds():
    a = phantom((24, 24, 24), seed=3)
    b = phantom((24, 24, 24), seed=3)
    c = phantom((24, 24, 24), seed=4)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_phantom_given_lesions_are_brighter_than_their_surroundings():
    lesions = [Lesion((20.0, 30.0, 20.0), 4.0, 100.0), Lesion((40.0, 34.0, 44.0), (3.0, 4.0, 5.0), 80.0)]
    vol, labels = phantom((64, 64, 64), lesions=lesions, seed=0, noise_hu=5.0)
    for i, lesion in enumerate(lesions, start=1):
        inside = labels == i
        assert torch.equal(inside, lesion_mask(vol.shape, lesion.centre, lesion.radius))
        # a shell just outside the lesion
        shell = lesion_mask(vol.shape, lesion.centre, tuple(r + 2 for r in data._radii(lesion.radius, 3))) & ~inside
        assert vol[inside].mean() > vol[shell].mean() + 0.5 * lesion.contrast


def test_phantom_random_lesions_sit_inside_the_body():
    vol, labels = phantom((48, 48, 48), lesions=4, seed=7)
    assert (labels > 0).any()
    for i in labels.unique()[1:]:
        assert vol[labels == i].median() > -300  # centred in tissue, not in air or lung


def test_random_lesions_reproducible_and_in_range():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = random_lesions(5, (20, 30, 40), (2.0, 3.0), (-50.0, 50.0), g1)
    b = random_lesions(5, (20, 30, 40), (2.0, 3.0), (-50.0, 50.0), g2)
    assert a == b and len(a) == 5
    for lesion in a:
        assert all(0 <= c < s for c, s in zip(lesion.centre, (20, 30, 40)))
        assert 2.0 <= lesion.radius <= 3.0 and -50.0 <= lesion.contrast <= 50.0
    inside = torch.zeros(20, 30, 40, dtype=torch.bool)
    inside[5, 6, 7] = True
    assert random_lesions(3, (20, 30, 40), generator=g1, inside=inside)[2].centre == (5.0, 6.0, 7.0)
    with pytest.raises(ValueError, match="radius_range"):
        random_lesions(1, (8, 8, 8), radius_range=(3.0, 1.0))


def test_insert_lesion_returns_new_volume_and_mask_2d_and_3d():
    vol = torch.zeros(10, 12, 14)
    new, mask = insert_lesion(vol, (5, 6, 7), 2.0, 3.0)
    assert vol.abs().sum() == 0  # input untouched
    assert mask.dtype == torch.bool and mask.shape == vol.shape
    assert mask[5, 6, 7] and not mask[5, 6, 10] and mask.sum() == 33  # voxels within distance 2 of a voxel centre
    assert torch.equal(new[mask], torch.full((33,), 3.0)) and new[~mask].abs().sum() == 0
    ct = load_ct_slice()
    new2, mask2 = insert_lesion(ct, (64.0, 40.0), (5.0, 8.0), 200.0)
    assert mask2.shape == (128, 128) and mask2[64, 47] and not mask2[70, 40]
    assert torch.allclose(new2[mask2] - ct[mask2], torch.tensor(200.0))
    with pytest.raises(ValueError, match="centre needs 3"):
        insert_lesion(vol, (1, 2), 1.0, 1.0)


def test_tumour_and_distant_metastasis_on_mni152():
    brain = load_mni152()
    vol, primary = insert_lesion(brain, (40, 30, 30), 5.0, 0.5)
    vol, metastasis = insert_lesion(vol, (60, 90, 75), 3.0, 0.5)
    assert not (primary & metastasis).any()
    assert vol[primary].mean() > brain[primary].mean() + 0.49


def test_mni152_shape_range_orientation():
    vol = load_mni152()
    raw = load_mni152(canonical=False)
    assert vol.dtype == torch.float32 and vol.shape == (95, 117, 99) and raw.shape == (99, 117, 95)
    assert vol.min() == 0 and vol.max() == 1
    # canonical = raw permuted (x, y, z) -> (z, y, x), with z and y reversed
    assert torch.equal(vol, raw.permute(2, 1, 0).flip(0, 1))
    # D index 0 is the top of the head: the brain's mass sits lower in the first half of the axis
    mass_per_slice = vol.sum(dim=(1, 2))
    assert mass_per_slice[:5].sum() < mass_per_slice[-40:-35].sum()


def test_ct_slice_is_in_hounsfield_units():
    ct = load_ct_slice()
    assert ct.shape == (128, 128) and ct.dtype == torch.float32
    import pydicom
    from pydicom.data import get_testdata_file

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    expected = torch.from_numpy(ds.pixel_array.astype("float32")) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert torch.equal(ct, expected)
    assert float(ds.RescaleIntercept) == -1024.0  # the conversion is not the identity
    assert -1100 < ct.min() < -800 and ct.max() > 1000  # air-ish and bone


def test_loaders_need_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network disabled by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    # Drop every cache, ours and nilearn's, so the files are really read now.
    data._mni152_array.cache_clear()
    data._ct_small.cache_clear()
    from nilearn.datasets import load_mni152_template

    load_mni152_template.cache_clear()
    assert load_mni152().shape == (95, 117, 99)
    assert load_ct_slice().shape == (128, 128)


def test_loaders_return_fresh_tensors():
    a = load_ct_slice()
    a += 1
    assert not torch.equal(a, load_ct_slice())


def test_scale_hu_maps_a_display_window_onto_minus_one_to_one():
    level, width = 40.0, 400.0
    hu = torch.tensor([[-1000.0, -160.0, -60.0], [40.0, 140.0, 240.0], [240.5, 1200.0, 40.25]])
    scaled = data.scale_hu(hu, width / 2, centre=level, clip=(level - width / 2, level + width / 2))
    expected = torch.tensor([[-1.0, -1.0, -0.5], [0.0, 0.5, 1.0], [1.0, 1.0, 0.00125]])
    assert scaled.shape == hu.shape and torch.allclose(scaled, expected, rtol=0, atol=1e-7)
    # Clipping first in HU equals clipping afterwards in window units, bit for bit (the lesson's data rely on it).
    g = torch.Generator().manual_seed(0)
    many = torch.cat([torch.randn(4000, generator=g) * 600, torch.tensor([-160.0, 240.0, -159.99998, 239.99998])])
    assert torch.equal(
        data.scale_hu(many, width / 2, centre=level, clip=(-160.0, 240.0)), ((many - level) / (width / 2)).clamp(-1, 1)
    )


def test_scale_hu_plain_scaling_keeps_dtype_and_device():
    hu = torch.tensor([-1000.0, 0.0, 500.0, 1750.0], dtype=torch.float64)
    scaled = data.scale_hu(hu, 500.0)
    assert scaled.dtype == torch.float64 and torch.equal(scaled, hu / 500.0)
    assert torch.equal(data.scale_hu(hu.float(), 100.0, clip=(-200.0, 400.0)), hu.float().clamp(-200.0, 400.0) / 100.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [({"scale": 0.0}, "scale must be a positive"), ({"scale": 1.0, "clip": (400.0, -200.0)}, "low <= high")],
)
def test_scale_hu_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        data.scale_hu(torch.zeros(3), **kwargs)
