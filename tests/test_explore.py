"""The interactive explorers, driven headlessly through their controls."""

import base64
import html
import io
import itertools
import math
import re

import matplotlib

matplotlib.use("Agg")

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from PIL import Image

from minattn import MultiHeadAttention, cost, patchify, shifted_window_mask
from minattn.data import load_ct_slice, phantom
from minattn.explore import (
    attention_explorer,
    cost_explorer,
    heads_explorer,
    patch_explorer,
    receptive_field_explorer,
    relative_bias_explorer,
    window_explorer,
)
from minattn.explore.relative_bias import table_offsets
from minattn.receptive_field import layers_to_cover, receptive_field
from minattn.windows import region_ids

GIB = 2**30


@pytest.fixture(scope="module")
def small_volume():
    return phantom((24, 40, 36), lesions=1, seed=0)[0]


def _png_size(explorer):
    return Image.open(io.BytesIO(explorer.png())).size


def _drive(explorer, name, values):
    for value in values:
        explorer.controls[name].value = value
        assert explorer.state["error"] is None, explorer.state["error"]


# Shared behaviour ------------------------------------------------------------------------------


def test_the_picture_shown_is_the_one_drawn_even_when_an_artist_is_called_image():
    """Regression: a subclass naming its imshow artist `image` once hid the widget's picture in a browser."""
    from minattn.explore._base import Explorer

    class Noise(Explorer):
        def build(self, figure):
            self.image = self.dynamic(figure.subplots().imshow(np.zeros((4, 4)), vmin=0, vmax=1))

        def update(self):
            self.image.set_data(np.random.default_rng(self.value("seed")).random((4, 4)))

    explorer = Noise({"seed": widgets.IntSlider(value=0, min=0, max=3)}, [["seed"]], figsize=(2, 2))
    shown = [child for child in explorer.children if "<img " in getattr(child, "value", "")]
    assert len(shown) == 1 and _shown_png(shown[0])[:4] == b"\x89PNG"
    first = _shown_png(shown[0])
    explorer.controls["seed"].value = 1
    assert _shown_png(shown[0]) == explorer.png() != first
    assert explorer._dom_classes == ("minattn-explorer",)  # no registered function names it


def _shown_png(widget) -> bytes:
    """The PNG bytes of the ``<img src="data:image/png;base64,...">`` in an HTML widget."""
    source = re.search(r'src="data:image/png;base64,([^"]+)"', widget.value)
    return base64.b64decode(source.group(1))


def _shown_alt(widget) -> str:
    return html.unescape(re.search(r'alt="([^"]*)"', widget.value).group(1))


def test_every_explorer_says_in_words_what_its_panels_draw():
    from minattn.explore.registry import EXPLORERS

    for name, cls in EXPLORERS.items():
        assert len(cls.description) > 80 and cls.description.endswith("."), f"{name}: {cls.description!r}"
        assert cls.description != cls.title


def test_the_picture_carries_alt_text_that_follows_what_it_shows():
    """The alt text is the description, then the info line as plain text; it changes with the picture."""
    explorer = attention_explorer()
    alt = _shown_alt(explorer.picture)
    assert alt == explorer.alt_text()
    assert alt.startswith(explorer.description + " Now: ")
    assert "out1 = " in alt and "<" not in alt.split(" Now: ")[1]  # the info line's text, its tags gone
    explorer.controls["temperature"].value = 3.0
    assert _shown_alt(explorer.picture) != alt


def test_alt_text_quotes_and_markup_are_escaped_in_the_attribute():
    from minattn.explore._base import Explorer, _plain_text

    assert _plain_text("<b>5</b> tokens<br>of &lt;8&gt;") == "5 tokens of <8>"

    class Quoted(Explorer):
        description = 'A "quoted" <panel> & more.'

        def build(self, figure):
            figure.subplots()

        def update(self):
            self.show_info('value "<b>7</b>"')

    explorer = Quoted({"n": widgets.IntSlider(value=0)}, [["n"]], figsize=(2, 2))
    assert _shown_alt(explorer.picture) == 'A "quoted" <panel> & more. Now: value " 7 "'
    assert len(re.findall("<img ", explorer.picture.value)) == 1


@pytest.mark.parametrize(
    "make, name, values",
    [
        (attention_explorer, "temperature", [0.5, 2.0]),
        (cost_explorer, "window", [4, 16]),
        (window_explorer, "token_h", [2, 5]),
        (receptive_field_explorer, "layers", [1, 5]),
        (heads_explorer, "query_col", [1, 6]),
        (relative_bias_explorer, "query_row", [0, 4]),
    ],
)
def test_explorers_are_widgets_that_update_in_place(make, name, values, two_threads):
    threads = torch.get_num_threads()
    explorer = make()
    assert isinstance(explorer, widgets.VBox) and explorer.state["error"] is None
    assert all(isinstance(c, widgets.Widget) for c in explorer.controls.values())
    figure, axes = explorer.figure, list(explorer.figure.axes)
    artists = [list(ax.get_children()) for ax in axes]
    first = explorer.png()
    assert first[:8] == b"\x89PNG\r\n\x1a\n" and _png_size(explorer)[0] > 300
    count = explorer.update_count
    _drive(explorer, name, values)
    assert explorer.update_count == count + len(values)  # one redraw per change, no more
    assert explorer.figure is figure and list(figure.axes) == axes  # same figure, same axes
    assert [list(ax.get_children()) for ax in axes] == artists  # same artists, updated in place
    assert explorer.png() != first
    assert explorer.last_update_s < 2.0  # loose: the benchmark measures this properly
    assert torch.get_num_threads() == threads  # the single-thread trick is undone


def test_patch_explorer_default_volume_is_the_mni152_template():
    explorer = patch_explorer()
    assert explorer.state["shape"] == (95, 117, 99)
    assert explorer.state["fitted_shape"] == (96, 120, 104)  # padded to multiples of 8
    assert explorer.state["tokens"] == cost.num_tokens((96, 120, 104), 8) == 2340
    assert explorer.state["params"] == 65_664  # the course's E (p^3 C + 1) for p = 8, C = 1, E = 128


# 1. Attention --------------------------------------------------------------------------------------


def test_attention_preset_reproduces_the_seed_blending():
    explorer = attention_explorer()
    w = explorer.state["weights"]
    assert w.shape == (2, 3)
    np.testing.assert_allclose(w.sum(1), 1.0)
    # q1 = k1 and q2 = k2; k3 is as similar to each query as its own key: each query blends its own value with v3
    assert w[0, 0] == pytest.approx(w[0, 2]) and w[0, 1] < 0.05 and w[0, 0] > 0.45
    assert w[1, 1] == pytest.approx(w[1, 2]) and w[1, 0] < 0.05
    assert w[0, 2] == pytest.approx(w[1, 2])  # v3 is shared context for both queries
    expected = torch.softmax(torch.tensor([4.0, 0.0, 4.0], dtype=torch.float64) / math.sqrt(2), 0).numpy()
    np.testing.assert_allclose(w[0], expected)
    np.testing.assert_allclose(explorer.state["output"], w)  # one-hot values: outputs are the blends
    assert "out1 = 0.49 v1 + 0.03 v2 + 0.49 v3" in explorer.state["text"]
    q, k = explorer.state["q"], explorer.state["k"]
    np.testing.assert_allclose(explorer.state["scores"], (q @ k.T / math.sqrt(2)).numpy())


def test_attention_temperature_and_scaling():
    explorer = attention_explorer()
    sharp = explorer.state["weights"][0, 0]
    explorer.controls["temperature"].value = 5.0
    assert explorer.state["weights"][0, 0] < sharp  # flatter
    np.testing.assert_allclose(explorer.state["weights"].sum(1), 1.0)
    explorer.controls["temperature"].value = 1.0
    explorer.controls["d_k"].value = 256  # moving d_k switches to random vectors
    assert explorer.state["mode"] == "random" and explorer.state["q"].shape == (3, 256)
    scaled_peak = explorer.state["mean_peak_weight"]
    explorer.controls["scaled"].value = False
    assert explorer.state["mean_peak_weight"] > scaled_peak + 0.2  # unscaled scores saturate the softmax
    assert explorer.state["weights"].max() > 0.95
    assert explorer.curves[False][-1] > 0.9 and explorer.curves[True][-1] < 0.6


def test_attention_bad_input_shows_a_message_and_recovers():
    explorer = attention_explorer()
    explorer.controls["queries"].value = "1 2 3"  # d_k 3 against keys of d_k 2
    assert explorer.value("preset") == "custom"
    assert "d_k" in explorer.state["error"] and "d_k" in explorer.message.value
    explorer.controls["queries"].value = "one two"
    assert "could not read numbers" in explorer.state["error"]
    explorer.controls["queries"].value = "0 2; 2 0"
    assert explorer.state["error"] is None and explorer.message.value == ""
    assert explorer.state["weights"][0, 1] == pytest.approx(explorer.state["weights"][0, 2])
    explorer.controls["preset"].value = "seed"
    assert explorer.controls["queries"].value == "2 0; 0 2" and explorer.state["error"] is None


# 2. Patches ----------------------------------------------------------------------------------------


def test_patch_explorer_counts_tokens_and_parameters(small_volume):
    explorer = patch_explorer(small_volume)
    for p in (2, 4, 5, 8, 12):
        explorer.controls["patch"].value = p
        shape = explorer.state["fitted_shape"]
        assert all(s % p == 0 for s in shape) and all(0 <= f - s < p for f, s in zip(shape, small_volume.shape))
        assert explorer.state["tokens"] == cost.num_tokens(shape, p)
        assert explorer.state["params"] == cost.patch_embed_params(p, 1, 128)
    explorer.controls["embed_dim"].value = 64
    explorer.controls["channels"].value = 4
    assert explorer.state["params"] == cost.patch_embed_params(12, 4, 64) == 64 * (12**3 * 4 + 1)
    assert explorer.state["vector_length"] == 4 * 12**3


def test_patch_explorer_shows_the_real_patch_vector(small_volume):
    explorer = patch_explorer(small_volume)
    explorer.controls["patch"].value = 4
    explorer.controls["slice"].value = 9
    index = explorer.state["token_index"]
    tokens = patchify(small_volume[None, None], 4)[0]
    np.testing.assert_allclose(explorer.state["patch_vector"], tokens[index].numpy())
    np.testing.assert_allclose(explorer.state["slice"], small_volume[9].numpy())


def test_patch_explorer_bad_patch_message_and_recovery(small_volume):
    explorer = patch_explorer(small_volume)
    explorer.controls["fit"].value = "none"
    explorer.controls["patch"].value = 5  # 24 x 40 x 36 is not divisible by 5
    assert "not divisible" in explorer.state["error"] and "not divisible" in explorer.message.value
    explorer.controls["patch"].value = 4
    assert explorer.state["error"] is None and explorer.state["tokens"] == 6 * 10 * 9
    explorer.controls["fit"].value = "crop"
    explorer.controls["patch"].value = 32  # larger than D = 24
    assert "larger than the volume" in explorer.state["error"]
    explorer.controls["patch"].value = 8
    assert explorer.state["error"] is None and explorer.state["fitted_shape"] == (24, 40, 32)


def test_patch_explorer_views_and_slice_range(small_volume):
    explorer = patch_explorer(small_volume)
    explorer.controls["axis"].value = "W"
    assert explorer.controls["slice"].max == 39  # 36 padded to 40 along W
    assert explorer.state["slice"].shape == (24, 40)
    explorer.controls["axis"].value = "H"
    assert explorer.controls["slice"].max == 39 and explorer.state["slice"].shape == (24, 40)


# 3. Cost -------------------------------------------------------------------------------------------


def test_cost_explorer_seed_numbers():
    explorer = cost_explorer()
    s = explorer.state
    assert s["tokens"] == 131_072 and s["scores"] == 131_072**2 > 17e9
    assert s["memory_bytes"] == 64 * GIB and not s["fits"]
    assert s["flops"] > 1e12  # tera-FLOPs for one layer
    assert s["windowed_fits"] and s["windowed_memory_bytes"] == 256 * 2**20
    explorer.controls["preset"].value = "seed_windows"
    assert explorer.state["reduction"] == 4096
    explorer.controls["preset"].value = "seed_ct"
    assert explorer.state["tokens"] == 12_288
    explorer.controls["preset"].value = "seed_feature_map"
    explorer.controls["memory_gib"].value = 80
    assert explorer.state["fits"] and explorer.value("preset") == "seed_feature_map"
    explorer.controls["dtype"].value = "float16"
    assert explorer.state["memory_bytes"] == 32 * GIB and explorer.value("preset") == "custom"


def test_cost_explorer_bad_values():
    explorer = cost_explorer()
    explorer.controls["patch"].value = 3  # 32 x 64 x 64 is not divisible by 3
    assert "not divisible" in explorer.state["error"]
    explorer.controls["patch"].value = 4
    assert explorer.state["error"] is None and explorer.state["grid"] == (8, 16, 16)
    explorer.controls["window"].value = 32  # larger than the 8 x 16 x 16 grid
    assert explorer.state["error"] is None and "larger than the token grid" in explorer.state["note"]
    assert explorer.state["window"] == (8, 16, 16) and explorer.state["num_windows"] == 1
    assert explorer.state["windowed_scores"] == explorer.state["scores"]
    explorer.controls["window"].value = 5  # does not divide: padded, with a note
    assert "padded" in explorer.state["note"]
    assert explorer.state["windowed_scores"] == cost.windowed_attention_scores((8, 16, 16), 5)


# 4. Windows ----------------------------------------------------------------------------------------


def _brute_allowed(grid, window, shift, token):
    """Coordinates that token may attend to, from geometry alone (padded grid, rolled positions, regions)."""
    padded = [-(-g // w) * w for g, w in zip(grid, window)]

    def key(c):
        out = []
        for x, w, s, length in zip(c, window, shift, padded):
            r = (x - s) % length
            out.append((r // w, (0 if r < length - w else 1 if r < length - s else 2) if s else 0))
        return out

    mine = key(token)
    return {c for c in np.ndindex(*padded) if key(c) == mine}


def test_window_explorer_allowed_set_is_the_mask_row():
    explorer = window_explorer()
    for token in [(1, 7, 7), (0, 0, 0), (3, 4, 5), (2, 2, 1)]:
        for name, value in zip(("token_d", "token_h", "token_w"), token):
            explorer.controls[name].value = value
        s = explorer.state
        assert s["token"] == token and s["shift"] == (1, 2, 2)
        # the allowed set is exactly the True entries of the token's mask row, mapped to positions
        row_positions = {p for p, ok in zip(s["window_tokens"], s["mask_row"]) if ok}
        assert set(s["allowed_positions"]) == row_positions == {tuple(p) for p in s["allowed"].nonzero().tolist()}
        assert set(s["allowed_positions"]) == _brute_allowed((4, 8, 8), (2, 4, 4), (1, 2, 2), token)
        mask = shifted_window_mask((4, 8, 8), (2, 4, 4), (1, 2, 2))
        assert np.array_equal(s["mask"], mask[s["window_index"]].numpy())
        assert s["window_tokens"][s["position_in_window"]] == token
    explorer.controls["token_h"].value = 7
    explorer.controls["token_w"].value = 7
    explorer.controls["token_d"].value = 1
    assert len(explorer.state["allowed_positions"]) == 8  # the wrapped strips are masked off


def test_window_explorer_without_shift_allows_the_whole_window():
    explorer = window_explorer(token=(1, 7, 7))
    explorer.controls["shifted"].value = False
    s = explorer.state
    assert s["shift"] == (0, 0, 0) and s["mask_row"].all() and len(s["allowed_positions"]) == 32
    assert set(s["allowed_positions"]) == {(d, h, w) for d in (0, 1) for h in range(4, 8) for w in range(4, 8)}
    assert (s["regions"] == 0).all()


def test_window_explorer_regions_are_region_ids_rolled_back():
    explorer = window_explorer()
    labels = region_ids((4, 8, 8), (2, 4, 4), (1, 2, 2))
    assert torch.equal(explorer.state["regions"], torch.roll(labels, shifts=(1, 2, 2), dims=(0, 1, 2)))


def test_window_explorer_bad_window_message_and_recovery():
    explorer = window_explorer()
    explorer.controls["window_h"].value = 12  # larger than the grid's 8
    assert "larger than the token grid" in explorer.state["error"] and "&#9888;" in explorer.message.value
    explorer.controls["window_h"].value = 3  # 8 is not a multiple of 3: padded, still fine
    assert explorer.state["error"] is None and explorer.state["padded"] == (4, 9, 8)
    pads = explorer.state["allowed"][:, 8:, :]
    assert explorer.state["allowed"].shape == (4, 9, 8) and pads.dtype == torch.bool
    explorer.controls["grid_h"].value = 5  # the token slider follows the grid
    assert explorer.controls["token_h"].max == 4 and explorer.state["token"][1] <= 4
    assert explorer.state["error"] is None


# 5. Receptive field --------------------------------------------------------------------------------


def test_receptive_field_explorer_grows_only_when_shifted():
    explorer = receptive_field_explorer(grid=(2, 16, 16), window=(2, 4, 4), token=(0, 6, 9), layers=1)
    counts = []
    for layers in range(7):
        explorer.controls["layers"].value = layers
        s = explorer.state
        counts.append((s["count_shifted"], s["count_regular"]))
        assert torch.equal(s["field_shifted"], receptive_field((2, 16, 16), (2, 4, 4), (0, 6, 9), layers))
        assert torch.equal(
            s["field_regular"], receptive_field((2, 16, 16), (2, 4, 4), (0, 6, 9), layers, shifted=False)
        )
    assert counts[0] == (1, 1) and counts[1] == (32, 32)
    assert [c[1] for c in counts[1:]] == [32] * 6  # never leaves the window
    assert all(b[0] > a[0] for a, b in itertools.pairwise(counts[1:5]))  # keeps growing
    assert explorer.state["layers_to_cover_regular"] is None
    assert explorer.state["layers_to_cover_shifted"] == layers_to_cover((2, 16, 16), (2, 4, 4), (0, 6, 9))


def test_receptive_field_explorer_bad_window_and_recovery():
    explorer = receptive_field_explorer()
    explorer.controls["grid_d"].value = 1  # window D = 2 is now larger than the grid
    assert "larger than the token grid" in explorer.state["error"]
    explorer.controls["window_d"].value = 1
    assert explorer.state["error"] is None and explorer.state["grid"][0] == 1


# 6. Heads ------------------------------------------------------------------------------------------


def test_heads_explorer_maps_are_distributions_from_the_module():
    explorer = heads_explorer()
    s = explorer.state
    assert s["weights"].shape == (4, 8, 8)
    np.testing.assert_allclose(s["weights"].reshape(4, -1).sum(1), 1.0)
    np.testing.assert_allclose(s["all_weights"].sum(-1), 1.0)
    # the same numbers from a fresh MultiHeadAttention configured the same way
    mha = MultiHeadAttention(64, 4).double()
    assert mha.in_proj_weight.shape == explorer.attention.in_proj_weight.shape
    mha.load_state_dict(explorer.attention.state_dict())
    _, weights = mha(s["features"][None], return_weights=True)
    np.testing.assert_allclose(weights[0].detach().numpy(), s["all_weights"])


def test_heads_explorer_temperature_sharpens_one_head_only():
    explorer = heads_explorer()
    explorer.controls["preset"].value = "all_one"
    before = [h["entropy_bits"] for h in explorer.state["heads"]]
    explorer.controls["T_position"].value = 0.1
    after = [h["entropy_bits"] for h in explorer.state["heads"]]
    assert after[2] < before[2] - 1.0
    assert after[:2] == pytest.approx(before[:2]) and after[3] == pytest.approx(before[3])
    # the sharp position head looks at the query's own neighbourhood
    peak = np.unravel_index(explorer.state["weights"][2].argmax(), (8, 8))
    assert max(abs(peak[0] - 4), abs(peak[1] - 4)) <= 1
    explorer.controls["preset"].value = "council"
    assert explorer.controls["T_intensity"].value == pytest.approx(0.25)


def test_heads_explorer_offers_only_windows_that_tile_the_grid():
    explorer = heads_explorer()
    assert list(explorer.controls["window"].options) == [2, 4, 8, 16]  # 32 tokens per side
    with pytest.raises(Exception, match="Invalid selection"):
        explorer.controls["window"].value = 6  # 32 is not a multiple of 6: not offered
    explorer.controls["window"].value = 16
    assert explorer.state["error"] is None and explorer.state["weights"].shape == (4, 16, 16)
    assert explorer.controls["window_row"].max == 1
    cropped = heads_explorer(load_ct_slice()[:96, :96])  # 24 tokens per side with 4-pixel patches
    assert list(cropped.controls["window"].options) == [2, 3, 4, 6, 8, 12]
    cropped.controls["patch"].value = 8  # 12 tokens per side
    assert list(cropped.controls["window"].options) == [2, 3, 4, 6, 12]
    assert cropped.state["error"] is None and cropped.controls["window"].value == 6  # nearest to 8
    assert cropped.controls["window_row"].max == 1


# 7. Relative position bias -------------------------------------------------------------------------


def test_relative_bias_shuffle_shows_permutation_equivariance():
    explorer = relative_bias_explorer()
    s = explorer.state
    assert not s["shuffled"] and np.allclose(s["change_with_bias"], 0) and np.allclose(s["change_without_bias"], 0)
    rng_state = torch.get_rng_state()
    explorer.click("shuffle")
    s = explorer.state
    assert torch.equal(torch.get_rng_state(), rng_state)  # the explorer has its own generator
    assert s["shuffled"] and not torch.equal(s["permutation"], torch.arange(36))
    assert s["change_without_bias"].max() < 1e-10  # without bias: outputs only permuted
    assert s["change_with_bias"].max() > 1e-2  # with bias: outputs change
    explorer.controls["use_bias"].value = False
    np.testing.assert_allclose(explorer.state["change_shown"], 0, atol=1e-10)
    explorer.click("unshuffle")
    assert not explorer.state["shuffled"]


def test_relative_bias_row_is_the_table_at_each_offset():
    explorer = relative_bias_explorer()
    explorer.controls["window"].value = 5
    explorer.controls["query_row"].value = 1
    explorer.controls["query_col"].value = 3
    s = explorer.state
    table = s["table"]  # (9, 9): row = dh + 4, col = dw + 4
    for kh in range(5):
        for kw in range(5):
            assert s["bias_row"][kh, kw] == pytest.approx(table[1 - kh + 4, 3 - kw + 4])
    assert s["bias_row"][1, 3] == pytest.approx(0.0)  # distance 0: no penalty
    assert s["bias_row"][1, 3] > s["bias_row"][4, 0]  # far keys are penalised
    offsets = table_offsets((5, 5))
    assert offsets.shape == (81, 2) and offsets[40].tolist() == [0, 0]
    explorer.controls["kind"].value = "left"
    row = explorer.state["bias_row"]
    assert np.unravel_index(row.argmax(), row.shape) == (1, 2)  # the key just left of the query
    explorer.controls["kind"].value = "init"
    assert np.abs(explorer.state["table"]).max() <= 0.04  # std 0.02, truncated at 2 std


def test_relative_bias_bad_window_message_and_recovery():
    explorer = relative_bias_explorer()
    explorer.controls["patch"].value = 16
    explorer.controls["window"].value = 10  # 160 px > 128 px
    assert "more than the" in explorer.state["error"]
    explorer.controls["patch"].value = 8
    assert explorer.state["error"] is None and explorer.state["table"].shape == (19, 19)
