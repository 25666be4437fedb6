"""The cost calculators reproduce the course's figures exactly."""

import pytest
import torch

from minattn import cost


def test_seed_figures():
    assert cost.num_tokens((256, 256, 96), 8) == 12_288
    assert cost.patch_embed_params(8, 1, 128) == 65_664
    n = cost.num_tokens((32, 64, 64))
    assert n == 131_072
    assert cost.attention_scores(n) == 17_179_869_184 > 17e9
    assert cost.attention_matrix_bytes(n) == 68_719_476_736 == 64 * 2**30
    assert cost.attention_scores(cost.num_tokens((128,) * 3)) // cost.windowed_attention_scores((128,) * 3, 8) == 4096


def test_flops_are_tera_scale_for_the_seed_feature_map():
    flops = cost.attention_flops(131_072, head_dim=32)
    assert flops == 4 * 131_072**2 * 32
    assert flops > 1e12


def test_dtype_heads_and_batch_scale_the_bytes():
    assert cost.attention_matrix_bytes(100, dtype=torch.bfloat16) == 2 * 100**2
    assert cost.attention_matrix_bytes(100, heads=4, batch=2) == 8 * 4 * 100**2
    assert cost.attention_flops(10, 8, heads=3) == 3 * 4 * 100 * 8


def test_windowed_scores_pad_partial_windows():
    assert cost.windowed_attention_scores((8, 8, 8), 4) == 8 * 64**2
    assert cost.windowed_attention_scores((9, 8, 8), 4) == 12 * 64**2


def test_bad_input():
    with pytest.raises(ValueError, match="not divisible"):
        cost.num_tokens((100, 100, 100), 8)
    with pytest.raises(ValueError, match="positive int"):
        cost.attention_scores(0)
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        cost.num_tokens((4,), 2)
