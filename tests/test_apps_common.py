"""What the applications share: the training loop, the thread setting, sample subsets and the metrics."""

import itertools
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from minattn._threads import single_thread, torch_threads
from minattn.apps import fusion, microscope, mil
from minattn.apps._samples import SampleSet
from minattn.apps.training import History, count_parameters, fit
from minattn.metrics import binary_accuracy, mean_sd, roc_auc

# Threads ---------------------------------------------------------------------------------------


def test_single_thread_sets_one_and_restores(two_threads):
    with single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == two_threads


def test_single_thread_restores_after_an_exception(two_threads):
    with pytest.raises(RuntimeError, match="inside"), single_thread():
        raise RuntimeError("inside")
    assert torch.get_num_threads() == two_threads


def test_torch_threads_none_leaves_the_setting_alone(two_threads):
    with torch_threads(None):
        assert torch.get_num_threads() == two_threads
    for bad in (0, -1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="count must be a positive int"), torch_threads(bad):
            pass
    assert torch.get_num_threads() == two_threads


# The training loop ----------------------------------------------------------------------------


def _regression(n=11, features=3, seed=0):
    """A linear target the loop can learn: ``y = x @ w``, ``x (n, features)``."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, features, generator=g)
    return x, x @ torch.tensor([1.0, -2.0, 0.5])[:features]


def _fit_linear(epochs=3, batch_size=4, drop_last=False, seen=None, **kwargs):
    x, y = _regression()
    torch.manual_seed(0)
    model = nn.Linear(3, 1)

    def batch_loss(index):
        if seen is not None:
            seen.append(index.clone())
        return nn.functional.mse_loss(model(x[index])[:, 0], y[index])

    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    history = fit(
        model, batch_loss, len(x), optimiser, epochs=epochs, batch_size=batch_size, drop_last=drop_last, **kwargs
    )
    return model, history


def test_fit_visits_every_sample_once_per_epoch_and_records_the_history():
    seen = []
    model, history = _fit_linear(epochs=3, batch_size=4, seen=seen, seed=5)
    assert isinstance(history, History) and not model.training
    assert history.steps == len(history.losses) == 3 * 3  # 11 samples in batches of 4: 4, 4, 3
    assert [len(i) for i in seen] == [4, 4, 3] * 3
    for epoch in range(3):
        visited = torch.cat(seen[3 * epoch : 3 * epoch + 3])
        assert sorted(visited.tolist()) == list(range(11))
    assert not torch.equal(torch.cat(seen[:3]), torch.cat(seen[3:6]))  # a new order every epoch
    # An epoch's loss is the mean over its samples: steps weighted by their batch sizes.
    first = sum(loss * len(i) for loss, i in zip(history.losses[:3], seen[:3])) / 11
    assert history.epoch_losses[0] == pytest.approx(first)
    assert len(history.epoch_losses) == 3 and history.epoch_losses[-1] < history.epoch_losses[0]
    assert history.parameters == count_parameters(model) == 4 and history.seconds >= 0


def test_fit_drops_the_short_batch_and_is_seeded_without_touching_the_global_state():
    state = torch.random.get_rng_state()
    seen_a, seen_b = [], []
    a, history = _fit_linear(epochs=2, batch_size=4, drop_last=True, seen=seen_a, seed=1)
    assert history.steps == 2 * 2 and all(len(i) == 4 for i in seen_a)
    torch.random.set_rng_state(state)
    b, _ = _fit_linear(epochs=2, batch_size=4, drop_last=True, seen=seen_b, seed=1)
    assert all(torch.equal(i, j) for i, j in zip(seen_a, seen_b))
    assert torch.equal(a.weight, b.weight)
    _, other = _fit_linear(epochs=2, batch_size=4, drop_last=True, seed=2)
    assert other.losses != history.losses


def test_fit_steps_the_schedule_and_clips_the_gradient():
    totals, learning_rates = [], []

    def schedule(optimiser, total_steps):
        totals.append(total_steps)
        return torch.optim.lr_scheduler.LambdaLR(optimiser, lambda step: learning_rates.append(step) or 1.0)

    _fit_linear(epochs=2, batch_size=5, seed=0, schedule=schedule)
    assert totals == [2 * 3] and learning_rates == list(range(2 * 3 + 1))  # built once, stepped after each step

    x, y = _regression()
    model = nn.Linear(3, 1)
    norms = []
    optimiser = torch.optim.SGD(model.parameters(), lr=0.0)
    original_step = optimiser.step

    def step_and_measure(*args, **kwargs):
        norms.append(float(torch.cat([p.grad.flatten() for p in model.parameters()]).norm()))
        return original_step(*args, **kwargs)

    optimiser.step = step_and_measure
    fit(
        model,
        lambda i: 100.0 * nn.functional.mse_loss(model(x[i])[:, 0], y[i]),
        len(x),
        optimiser,
        epochs=1,
        batch_size=6,
        seed=0,
        max_grad_norm=0.25,
    )
    assert len(norms) == 2 and max(norms) == pytest.approx(0.25, rel=1e-4)


def test_fit_restores_threads_and_eval_mode_when_a_step_fails(two_threads):
    x, _y = _regression()
    model = nn.Linear(3, 1)
    threads_inside = []

    def failing(index):
        threads_inside.append(torch.get_num_threads())
        raise RuntimeError("bad batch")

    with pytest.raises(RuntimeError, match="bad batch"):
        fit(model, failing, len(x), torch.optim.SGD(model.parameters(), lr=0.1), epochs=1, batch_size=4, seed=0)
    assert threads_inside == [1] and torch.get_num_threads() == two_threads and not model.training


def test_fit_rejects_bad_arguments():
    for name, kwargs in [
        ("epochs", {"epochs": 0}),
        ("batch_size", {"batch_size": 2.0}),
        ("fewer than one batch", {"batch_size": 12, "drop_last": True}),
    ]:
        with pytest.raises(ValueError, match=name):
            _fit_linear(**{"seed": 0, **kwargs})


def test_the_train_functions_return_the_one_history():
    cohort = fusion.make_cohort(20, seed=0)
    model, history = fusion.train_fusion(cohort, "late", epochs=2, batch_size=8, progress=False)
    assert isinstance(history, History) and history.steps == 2 * 3 and len(history.epoch_losses) == 2
    assert history.parameters == fusion.count_parameters(model) and not model.training


# Sample sets -----------------------------------------------------------------------------------


@dataclass
class _Toy(SampleSet):
    images: torch.Tensor  # (n, 2, 3)
    labels: torch.Tensor  # (n,)
    notes: list = field(default_factory=list)
    grid: int = 7


def _toy(n=5):
    return _Toy(torch.arange(n * 6.0).reshape(n, 2, 3), torch.arange(n) % 2 == 0, [f"s{i}" for i in range(n)])


@pytest.mark.parametrize(
    "index, rows",
    [
        ([3, 0, 3], [3, 0, 3]),  # order and repeats kept
        (torch.tensor([-1, 1]), [4, 1]),  # negative positions count from the end
        (torch.tensor([True, False, False, True, True]), [0, 3, 4]),
        (slice(1, 4), [1, 2, 3]),
        ([], []),
    ],
)
def test_subset_picks_the_same_rows_of_every_field(index, rows):
    toy = _toy()
    part = toy.subset(index)
    assert isinstance(part, _Toy) and len(part) == len(rows)
    assert torch.equal(part.images, toy.images[rows]) and torch.equal(part.labels, toy.labels[rows])
    assert part.notes == [f"s{i}" for i in rows] and part.grid == 7
    assert part.images.shape[1:] == (2, 3)


@pytest.mark.parametrize(
    "index, message",
    [
        ([0.0, 1.0], "integers or booleans"),
        ([[0, 1]], "1D"),
        (2, "1D"),
        ([5], r"lie in \[-5, 4\]"),
        ([-6], r"lie in \[-5, 4\]"),
        ([True, False], "one entry per sample, 5"),
        ("abc", "slice, integer positions"),
    ],
)
def test_subset_rejects_a_bad_index(index, message):
    with pytest.raises(ValueError, match=message):
        _toy().subset(index)


def test_the_applications_sets_subset_every_field():
    sets = [
        microscope.make_lesion_volumes(4, shape=(8, 8, 12), seed=0, margin=2, lesion_fraction=1.0),
        mil.make_bags(4, seed=0),
        fusion.make_cohort(4, seed=0),
    ]
    for data in sets:
        part = data.subset([2, 0])
        assert type(part) is type(data) and len(part) == 2
        for name, value in vars(data).items():
            if isinstance(value, torch.Tensor):
                torch.testing.assert_close(getattr(part, name), value[[2, 0]], rtol=0, atol=0, equal_nan=True)
            elif isinstance(value, list):
                assert getattr(part, name) == [value[2], value[0]], name
            else:
                assert getattr(part, name) == value, name


# Metrics ---------------------------------------------------------------------------------------


def _auc_by_pairs(scores, labels):
    """Brute force: the fraction of (positive, negative) pairs ordered correctly, ties one half."""
    pos = [s for s, y in zip(scores, labels) if y]
    neg = [s for s, y in zip(scores, labels) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_auc_hand_examples():
    # 2 positives x 2 negatives = 4 pairs: 0.35 beats 0.1 but not 0.4; 0.8 beats both -> 3/4.
    assert roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    # Ties count one half: positive 1 vs negative 1 -> 0.5, positive 2 vs negative 1 -> 1 => 0.75.
    assert roc_auc([1.0, 1.0, 2.0], [False, True, True]) == 0.75
    assert roc_auc([3, 2, 1], [1, 0, 0]) == 1.0
    assert roc_auc([3, 2, 1], [0, 1, 1]) == 0.0
    assert roc_auc([5, 5, 5, 5, 5], [0, 1, 0, 1, 1]) == 0.5  # all equal: every pair a tie


def test_auc_matches_brute_force_with_ties_on_any_shape():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        scores = torch.randint(0, 6, (23,), generator=g).float()  # many ties
        labels = torch.rand(23, generator=g) < 0.4
        labels[0], labels[1] = True, False
        expected = _auc_by_pairs(scores.tolist(), labels.tolist())
        assert roc_auc(scores, labels) == pytest.approx(expected, abs=1e-12)
        assert roc_auc(scores[:22].reshape(2, 11), labels[:22].reshape(2, 11)) == pytest.approx(
            _auc_by_pairs(scores[:22].tolist(), labels[:22].tolist()), abs=1e-12
        )


def test_auc_errors():
    with pytest.raises(ValueError, match="both classes; received 2 positives and 0 negatives"):
        roc_auc([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="0 positives and 3 negatives"):
        roc_auc([0.1, 0.2, 0.3], [0, 0, 0])
    with pytest.raises(ValueError, match="same length"):
        roc_auc([0.1, 0.2, 0.3], [1, 0])


def test_binary_accuracy():
    probabilities = torch.tensor([0.9, 0.5, 0.2, 0.7, 0.51], dtype=torch.float64)
    labels = torch.tensor([1, 1, 0, 0, 1])
    assert binary_accuracy(probabilities, labels) == 3 / 5  # 0.5 is not above the threshold
    assert binary_accuracy(probabilities, labels.bool(), threshold=0.45) == 4 / 5
    assert binary_accuracy(probabilities.float(), labels.float()) == 3 / 5
    with pytest.raises(ValueError, match="at least one case"):
        binary_accuracy([], [])
    with pytest.raises(ValueError, match="same length"):
        binary_accuracy([0.2, 0.3], [1])


def test_mean_sd_uses_the_sample_standard_deviation():
    assert mean_sd([0.1, 0.2, 0.4]) == "0.233 ± 0.153"  # sd with n - 1: sqrt(0.02333)
    assert mean_sd(torch.tensor([1.0, 3.0]), digits=1) == "2.0 ± 1.4"
    with pytest.raises(ValueError, match="at least two"):
        mean_sd([0.5])
