"""Shared fixtures: every tensor test runs on CPU and, where present, on CUDA."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

# Derandomised so CI sees the same examples every run; no deadline because a
# loaded 2-core machine can be slow on one example without anything being wrong.
settings.register_profile(
    "ci", derandomize=True, deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(params=DEVICES)
def device(request):
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
