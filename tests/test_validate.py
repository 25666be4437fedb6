"""minattn._validate.broadcast_shapes agrees with torch.broadcast_shapes, errors included."""

from __future__ import annotations

import pytest
import torch

from minattn._validate import broadcast_shapes

AGREE = [
    ((), ()),
    ((3,), ()),
    ((2, 1, 5), (4, 1)),
    ((1, 3, 1, 7), (2, 1, 6, 1), (6, 7)),
    ((0,), (1,)),
    ((2, 0, 3), (1, 3)),
    ((1, 1), (1,)),
    ((5, 4, 3, 2), (5, 4, 3, 2)),
]

DISAGREE = [
    ((3,), (4,)),
    ((2, 3), (3, 2)),
    ((0,), (2,)),
    ((1, 3, 1), (2, 1, 1), (4, 1, 1)),
]


@pytest.mark.parametrize("shapes", AGREE, ids=str)
def test_same_answer_as_torch(shapes):
    got = broadcast_shapes(*shapes)
    assert isinstance(got, torch.Size) and got == torch.broadcast_shapes(*shapes)


@pytest.mark.parametrize("shapes", DISAGREE, ids=str)
def test_refuses_what_torch_refuses_with_a_value_error(shapes):
    with pytest.raises(RuntimeError):
        torch.broadcast_shapes(*shapes)
    with pytest.raises(ValueError, match="do not broadcast"):
        broadcast_shapes(*shapes)


def test_takes_torch_sizes():
    assert broadcast_shapes(torch.Size([2, 1]), torch.Size([3])) == torch.Size([2, 3])
