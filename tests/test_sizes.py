"""as_triple: the size of a patch, window or shift, one per axis."""

import numpy as np
import pytest
import torch

from minattn.sizes import as_triple


@pytest.mark.parametrize(
    "size, expected",
    [
        (4, (4, 4, 4)),
        ((2, 4, 7), (2, 4, 7)),
        ([3, 1, 5], (3, 1, 5)),
        ((-2, 0, 3), (-2, 0, 3)),  # shifts: zero and negative pass unchanged
        (np.int64(5), (5, 5, 5)),
        (np.array([1, 2, 6]), (1, 2, 6)),
        (torch.tensor([6, 3, 2]), (6, 3, 2)),
        (torch.Size([8, 5, 9]), (8, 5, 9)),
    ],
)
def test_as_triple_gives_three_python_ints(size, expected):
    triple = as_triple(size)
    assert triple == expected and type(triple) is tuple
    assert all(type(v) is int for v in triple)


@pytest.mark.parametrize("size", [(2, 4), (1, 2, 3, 4), 2.0, (2, 4.0, 3), "444", True, (1, True, 2), None])
def test_as_triple_names_what_it_expected(size):
    with pytest.raises(ValueError, match=r"window_size must be an int or three ints \(D, H, W\); received"):
        as_triple(size, "window_size")
