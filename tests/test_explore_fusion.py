"""The fusion explorer (lesson 11), driven headlessly through its controls."""

import statistics

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from minattn.apps import fusion as fu
from minattn.explore import fusion_explorer
from minattn.explore.fusion import show_patient


@pytest.fixture(scope="module")
def trained():
    # A small cohort and a short training (~2 s): the explorer shows whatever the model does,
    # it does not need the lesson's accuracy.
    train, test = fu.make_cohort(400, seed=0), fu.make_cohort(40, seed=1)
    model, _ = fu.train_fusion(train, "cross", epochs=8, seed=0, progress=False)
    return model, test


def test_fusion_explorer_shows_the_models_maps_and_probabilities(trained, two_threads):
    model, test = trained
    threads = torch.get_num_threads()
    maps = fu.query_maps(model, test)  # (n, 4, 6, 6)
    probabilities = fu.evaluate(model, test)["probabilities"]
    explorer = fusion_explorer(model, test)
    assert isinstance(explorer, widgets.VBox) and explorer.state["error"] is None, explorer.state["error"]
    assert set(explorer.controls) == {"patient", "query"}
    assert explorer.controls["patient"].max == len(test) - 1
    assert list(explorer.controls["query"].options) == list(fu.CLINICAL_TOKENS)
    first_patient = explorer.state["patient"]  # starts on an older patient with the finding and decoys
    assert test.age[first_patient] >= fu.AGE_THRESHOLD and bool(test.finding[first_patient])
    figure, axes = explorer.figure, list(explorer.figure.axes)
    artists = [list(ax.get_children()) for ax in axes]
    first = explorer.png()
    assert first[:8] == b"\x89PNG\r\n\x1a\n"

    times, pngs, shown = [], {first}, {}
    for patient in (0, 3, first_patient):
        explorer.controls["patient"].value = patient
        assert explorer.state["error"] is None, explorer.state["error"]
        times.append(explorer.last_update_s)
        for t, query in enumerate(fu.CLINICAL_TOKENS):
            explorer.controls["query"].value = query
            state = explorer.state
            assert state["error"] is None, state["error"]
            times.append(explorer.last_update_s)
            assert state["patient"] == patient and state["query"] == query
            assert isinstance(state["map"], np.ndarray) and state["map"].shape == (fu.GRID, fu.GRID)
            np.testing.assert_allclose(state["map"], maps[patient, t].numpy(), atol=1e-6)
            assert state["probability"] == pytest.approx(float(probabilities[patient]), abs=1e-6)
            in_site = fu.region_of_tokens().reshape(fu.GRID, fu.GRID) == test.site[patient]
            assert state["share_in_region"] == pytest.approx(float(maps[patient, t][in_site].sum()), abs=1e-5)
            assert state["age"] == pytest.approx(float(test.age[patient]))
            assert state["outcome"] == int(test.outcome[patient])
            assert state["site"] == fu.REGIONS[int(test.site[patient])]
            assert f"P(outcome) = {float(probabilities[patient]):.2f}" in state["text"]
            assert f"{100 * state['share_in_region']:.0f}% of its attention" in state["text"]
            assert explorer.image_title.get_text().startswith(f"patient {patient}: age ")
            shown[patient, query] = state["map"].copy()
            pngs.add(explorer.png())
    # The map changes with the query and with the patient, and so does the picture.
    assert not np.allclose(shown[0, "site"], shown[0, "age"])
    assert not np.allclose(shown[0, "site"], shown[3, "site"])
    assert len(pngs) >= 10
    # The lesions and the exam's region drawn are the patient's.
    circles = [c for c in explorer.view.circles if c.get_visible()]
    assert len(circles) == int(test.lesions[first_patient].sum())
    site = int(test.site[first_patient])
    assert explorer.view.box.get_xy() == pytest.approx(((site % 2) * 24 - 0.5, (site // 2) * 24 - 0.5))

    assert explorer.figure is figure and list(figure.axes) == axes  # updated in place
    assert [list(ax.get_children()) for ax in axes] == artists
    assert explorer.full_draws == 1  # only the dynamic artists are redrawn
    assert statistics.median(times) < 0.5  # loose on a shared machine: ~20 ms measured
    assert torch.get_num_threads() == threads


def test_fusion_explorer_bad_patient_is_clamped_or_shown_as_a_message(trained):
    model, test = trained
    explorer = fusion_explorer(model, test, patient=2, query="age")
    assert explorer.state["patient"] == 2 and explorer.state["query"] == "age"
    explorer.controls["patient"].value = 10_000  # the slider clamps to its range
    assert explorer.controls["patient"].value == len(test) - 1
    assert explorer.state["error"] is None and explorer.state["patient"] == len(test) - 1
    explorer.controls["patient"].max = len(test) + 5  # a slider widened by hand: the explorer says why
    explorer.controls["patient"].value = len(test) + 2
    assert explorer.state["error"] == f"patient must lie in 0..{len(test) - 1}; received {len(test) + 2}"
    assert "patient must lie in" in explorer.message.value
    explorer.controls["patient"].value = 1  # the next good value clears it
    assert explorer.state["error"] is None and explorer.message.value == ""
    assert explorer.state["patient"] == 1


def test_fusion_explorer_rejects_bad_arguments(trained):
    model, test = trained
    with pytest.raises(ValueError, match=r"patient must be an int in 0\.\.39; received 40"):
        fusion_explorer(model, test, patient=len(test))
    with pytest.raises(ValueError, match="query must be one of"):
        fusion_explorer(model, test, query="weight")
    with pytest.raises(ValueError, match="CrossAttentionFusion"):
        fusion_explorer(fu.make_model("late"), test)
    with pytest.raises(ValueError, match="Cohort"):
        fusion_explorer(model, test.images)


def test_show_patient_draws_the_regions_lesions_and_map():
    cohort = fu.make_cohort(3, seed=2)
    ax = Figure().subplots()
    overlay = np.arange(36.0).reshape(6, 6) / 630.0
    view = show_patient(ax, cohort, 1, overlay=overlay)
    assert ax.get_title().startswith(f"age {float(cohort.age[1]):.0f}, site: {fu.REGIONS[int(cohort.site[1])]}")
    assert view.overlay.get_visible() and view.overlay.get_clim() == pytest.approx((0.0, 35 / 630))
    assert sum(c.get_visible() for c in view.circles) == int(cohort.lesions[1].sum())
    for region in cohort.lesions[1].nonzero().squeeze(1).tolist():
        row, col = cohort.lesion_centres[1, region].tolist()
        assert view.circles[region].get_center() == pytest.approx((col, row))
    assert not show_patient(Figure().subplots(), cohort, 0).overlay.get_visible()
    with pytest.raises(ValueError, match=r"overlay must have shape \(6, 6\)"):
        view.show(cohort, 0, overlay=np.zeros((4, 4)))
