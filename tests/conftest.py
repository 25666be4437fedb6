"""Shared fixtures: every tensor test runs on CPU and, where present, on CUDA."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

# pytest-xdist runs one worker per core; a worker's torch thread pool would then fight the other
# workers for the same cores (small tensors ran up to 40x slower that way), so each worker uses one.
# The kernels that nbval, nbgrader and the browser test start, and the scripts the tests run, are
# processes of their own: they read the thread count from the environment they inherit (measured:
# lesson 15's six training steps took 130 s under nbval beside a busy worker with two threads each).
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"

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


@pytest.fixture
def two_threads():
    """Start from two threads (so that a one-thread setting is a change), and put the original count back afterwards."""
    original = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(original)
