"""ToyWorld: determinism, the held-out split, stream namespacing, caption truth and rendering.

The rendering tests also pin the renderer's output (a fingerprint of a hand-built scene batch,
taken from the implementation ToyCLIP was pretrained on) and check that its chunked, blocked
evaluation is pure scheduling: changing chunk and block sizes leaves every pixel unchanged, and
every pixel equals the whole-batch renderer's (the benchmark baseline).
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from cliplab.toyworld import world as W
from cliplab.toyworld.render import Scene, colour_table, render
from cliplab.toyworld.vocabulary import (
    ALL_SHAPES,
    COLOUR_SYNONYMS,
    COLOURS,
    NOVEL_SHAPES,
    POSITIONS,
    SHAPES,
    SIZE_SYNONYMS,
    SIZES,
    TEXTURES,
)

render_module = importlib.import_module("cliplab.toyworld.render")

# --- caption parsing -------------------------------------------------------------------------

_SYNONYMS: dict[str, list[list[str]]] = {
    "shape": [{**SHAPES, **NOVEL_SHAPES}[name] for name in ALL_SHAPES],
    "colour": [COLOUR_SYNONYMS[name] for name in COLOURS],
    "size": [SIZE_SYNONYMS[name] for name in SIZES],
    "position": [[name] for name in POSITIONS],  # every position phrase ends in its name
    "texture": [TEXTURES[name] for name in TEXTURES],
}


_WORD_PATTERNS = {
    attribute: re.compile(r"(?<![\w-])(" + "|".join(re.escape(w) for words in table for w in words) + r")(?![\w-])")
    for attribute, table in _SYNONYMS.items()
}
_LABEL_OF_WORD = {
    attribute: {w: label for label, words in enumerate(table) for w in words} for attribute, table in _SYNONYMS.items()
}


def _mentioned(text: str, attribute: str) -> set[int]:
    """Classes of `attribute` whose words occur in `text` as whole words ('medium' != 'medium-sized')."""
    return {_LABEL_OF_WORD[attribute][m.group(1)] for m in _WORD_PATTERNS[attribute].finditer(text)}


def _assert_captions_true(texts: list[str], mentions: np.ndarray, labels: dict[str, np.ndarray]) -> None:
    """Each caption names exactly its scene's class for every attribute it mentions, nothing else."""
    assert len(texts) == len(mentions) == len(labels["shape"])
    for i, text in enumerate(texts):
        for j, attribute in enumerate(W.ATTRIBUTES):
            expected = {int(labels[attribute][i])} if mentions[i, j] else set()
            assert _mentioned(text, attribute) == expected, (text, attribute, expected)


# --- determinism and namespacing -------------------------------------------------------------


def test_training_batch_is_deterministic_and_seeded() -> None:
    world = W.ToyWorld()
    images, texts, truth = world.training_batch(seed=1, step=3, n=48)
    again = world.training_batch(seed=1, step=3, n=48)
    assert torch.equal(images, again[0]) and texts == again[1] and np.array_equal(truth, again[2])
    other_seed = world.training_batch(seed=2, step=3, n=48)
    other_step = world.training_batch(seed=1, step=4, n=48)
    for other in (other_seed, other_step):
        assert not torch.equal(images, other[0])
        assert texts != other[1]


def test_probe_scenes_are_fixed_by_seed() -> None:
    world = W.ToyWorld()
    a, b = world.probe_scenes(5, 40, split="all"), world.probe_scenes(5, 40, split="all")
    assert torch.equal(render(a), render(b))
    assert not torch.equal(render(a), render(world.probe_scenes(6, 40, split="all")))


def test_streams_are_namespaced() -> None:
    """Equal integers in the training, probe and task streams give unrelated scenes."""
    assert len({W.TRAIN_STREAM, W.PROBE_STREAM, W.TASK_STREAM}) == 3
    seed, n = 7, 64
    train = W.sample_scenes(W._rng(W.TRAIN_STREAM, seed, n), n, W.combos_of("train"))
    probe = W.ToyWorld().probe_scenes(seed, n, split="train")
    task = W.ToyWorld().novel_shape_scenes(seed, n, list(SHAPES))  # pretraining shapes, task stream
    for a, b in ((train, probe), (train, task), (probe, task)):
        assert not np.allclose(a.radius, b.radius)
        assert a.seed != b.seed
    training_images = W.ToyWorld().training_batch(seed, n, n)[0]
    assert not torch.equal(training_images, render(probe))


# --- splits ----------------------------------------------------------------------------------


def test_heldout_combos_cover_each_shape_and_colour_once() -> None:
    assert len(W.HELDOUT_COMBOS) == 8
    assert sorted(s for s, _ in W.HELDOUT_COMBOS) == sorted(SHAPES)
    assert sorted(c for _, c in W.HELDOUT_COMBOS) == sorted(COLOURS)
    train = {tuple(p) for p in W.combos_of("train").tolist()}
    heldout = {tuple(p) for p in W.combos_of("heldout").tolist()}
    every = {tuple(p) for p in W.combos_of("all").tolist()}
    assert len(every) == 64 and len(heldout) == 8 and len(train) == 56
    assert train | heldout == every and not train & heldout
    names = {(W.SHAPE_NAMES[s], W.COLOUR_NAMES[c]) for s, c in heldout}
    assert names == set(W.HELDOUT_COMBOS)


def test_training_never_shows_a_heldout_combo() -> None:
    heldout = {tuple(p) for p in W.combos_of("heldout").tolist()}
    scenes = W.sample_scenes(W._rng(W.TRAIN_STREAM, 0, 0), 5000, W.combos_of("train"))
    assert not {(int(s), int(c)) for s, c in zip(scenes.shape, scenes.colour)} & heldout
    # Black-box: no training caption over many steps names a held-out (shape, colour) pair.
    world, pairs = W.ToyWorld(), set()
    for step in range(30):
        _, texts, truth = world.training_batch(seed=0, step=step, n=64)
        assert truth.diagonal().all()  # every caption is true of its own image
        for text in texts:
            shapes, colours = _mentioned(text, "shape"), _mentioned(text, "colour")
            pairs |= {(s, c) for s in shapes for c in colours}
    assert len(pairs) > 40  # the check saw most of the 56 training combos
    assert not pairs & heldout


def test_unknown_split_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"'all', 'heldout', 'train'"):
        W.combos_of("test")
    with pytest.raises(ValueError, match="bogus"):
        W.ToyWorld().probe_scenes(0, 4, split="bogus")


def test_novel_shape_scenes_only_contain_novel_shapes() -> None:
    world = W.ToyWorld()
    novel = {ALL_SHAPES.index(s) for s in NOVEL_SHAPES}
    scenes = world.novel_shape_scenes(0, 300, list(NOVEL_SHAPES))
    assert set(scenes.shape.tolist()) == novel
    two = world.novel_shape_scenes(0, 100, ["arrow", "tee"])
    assert set(two.shape.tolist()) == {ALL_SHAPES.index("arrow"), ALL_SHAPES.index("tee")}
    images = world.render(scenes)
    assert images.dtype == torch.uint8 and images.shape == (300, 3, 32, 32)


# --- captions --------------------------------------------------------------------------------


@pytest.mark.parametrize("templates", [None, W.FULL_TEMPLATES])
def test_every_caption_is_true_of_its_image(templates: list[int] | None) -> None:
    rng = W._rng(42, 0 if templates is None else 1)
    for scenes in (
        W.sample_scenes(rng, 400, W.combos_of("all")),
        W.sample_scenes(rng, 200, W.combos_of("all"), shapes=np.arange(len(ALL_SHAPES))),
    ):
        texts, mentions = W.caption_batch(scenes, rng, templates)
        labels = W.scene_labels(scenes)
        _assert_captions_true(texts, mentions, labels)
        assert W.caption_truth(labels, mentions).diagonal().all()
        if templates is not None:
            assert mentions.all()


def test_caption_truth_hand_checked() -> None:
    # Caption j describes scene j; truth[i, j] says whether caption j is also true of image i.
    # scene 0: small red circle, centre, plain; scene 1: large red square, left, striped;
    # scene 2: small blue circle, centre, plain.
    labels = {
        "shape": np.array([0, 1, 0]),
        "colour": np.array([0, 0, 5]),
        "size": np.array([0, 2, 0]),
        "position": np.array([0, 1, 0]),
        "texture": np.array([0, 1, 0]),
    }
    mentions = np.array(
        [
            [False, True, False, False, False],  # caption 0: "a red shape"
            [True, False, False, False, False],  # caption 1: "a photo of a square"
            [True, False, True, False, False],  # caption 2: "a small circle"
        ]
    )
    expected = np.array(
        [
            [True, False, True],  # image 0: red, not a square, a small circle
            [True, True, False],  # image 1: red, a square, large
            [False, False, True],  # image 2: blue, not a square, a small circle
        ]
    )
    assert np.array_equal(W.caption_truth(labels, mentions), expected)


def test_vector_integer_draws_match_scalar_draws() -> None:
    """caption_batch draws all synonym choices in one call; numpy must match scalar draws."""
    bounds = np.random.default_rng(0).choice([2, 3], size=5000)
    a, b = np.random.default_rng(1), np.random.default_rng(1)
    scalar = [int(a.integers(k)) for k in bounds]
    assert b.integers(bounds).tolist() == scalar
    assert a.integers(2**62) == b.integers(2**62)


# --- rendering -------------------------------------------------------------------------------


def _hand_built_scene() -> Scene:
    """14 scenes, one per shape, every texture, fixed parameters (independent of sampling code)."""
    k = np.arange(14)
    return Scene(
        shape=k,
        colour=k % 8,
        size=k % 3,
        position=k % 5,
        texture=k % 6,
        radius=0.2 + 0.015 * k,
        centre=np.stack([0.4 + 0.015 * k, 0.6 - 0.012 * k], axis=1),
        rotation=np.linspace(-0.3, 0.3, 14),
        fg_rgb=np.stack([(k % 8) / 8, 0.9 - (k % 5) / 6, 0.2 + (k % 3) / 4], axis=1),
        bg_rgb=np.stack([0.3 + 0.02 * k, 0.5 - 0.01 * k, 0.4 + 0.005 * k], axis=1),
        texture_contrast=0.15 + 0.01 * k,
        texture_frequency=3.0 + 0.2 * k,
        texture_angle=0.2 * k,
        noise_std=0.02 + 0.003 * k,
        seed=1234,
    )


# Per-image, per-channel pixel sums and first spatial moments of `_hand_built_scene()` at 32 px,
# from the renderer ToyCLIP was pretrained on. The tolerance admits a few 1-level differences
# (another CPU's vector maths); anything that moves, recolours or re-noises an image fails.
_GOLDEN_SUMS = [
    [69173, 142418, 98549],
    [77934, 135204, 106959],
    [87660, 127381, 113118],
    [69993, 89071, 75270],
    [103376, 112005, 110395],
    [114003, 136653, 122577],
    [124009, 128526, 102107],
    [132619, 117663, 114640],
    [104353, 109101, 123725],
    [75844, 68603, 72498],
    [118464, 126022, 116956],
    [129548, 120417, 131769],
    [138535, 109318, 106024],
    [149547, 98098, 120792],
]
_GOLDEN_MOMENTS = [
    [2146503, 4412778, 3056019],
    [2424086, 4201019, 3325579],
    [2714837, 3947116, 3512088],
    [2193399, 2788436, 2359963],
    [3215851, 3474125, 3428637],
    [3684362, 4413079, 3960749],
    [3847553, 3994501, 3153560],
    [4081716, 3626979, 3542071],
    [3245167, 3380610, 3820406],
    [2377065, 2155891, 2267240],
    [3636866, 3904874, 3608553],
    [4056004, 3779729, 4144863],
    [4297663, 3353113, 3321798],
    [4639581, 3056539, 3735862],
]


def test_render_output_is_pinned() -> None:
    images = render(_hand_built_scene(), 32).long()
    w = torch.arange(32)
    sums = images.sum(dim=(2, 3))
    moments = (images * (w[:, None] + w[None, :])).sum(dim=(2, 3))
    assert (sums - torch.tensor(_GOLDEN_SUMS)).abs().max() <= 4
    assert (moments - torch.tensor(_GOLDEN_MOMENTS)).abs().max() <= 250


@pytest.mark.parametrize(("n", "size"), [(200, 32), (37, 28), (33, 16), (5, 2)])
def test_render_is_independent_of_chunking(monkeypatch: pytest.MonkeyPatch, n: int, size: int) -> None:
    scenes = W.sample_scenes(W._rng(3, n), n, W.combos_of("all"), shapes=np.arange(len(ALL_SHAPES)))
    reference = render(scenes, size)
    monkeypatch.setattr(render_module, "_CHUNK_PIXELS", 1)  # 16-image chunks
    monkeypatch.setattr(render_module, "_BLOCK_PIXELS", 1)  # one chunk per block
    assert torch.equal(render(scenes, size), reference)


def _whole_batch_renderer():
    """The renderer as first written (`benchmarks/baselines/render_whole_batch.py`)."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "baselines" / "render_whole_batch.py"
    spec = importlib.util.spec_from_file_location("render_whole_batch", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("n", "size"), [(300, 32), (40, 64)])
def test_render_matches_the_whole_batch_renderer_bit_for_bit(n: int, size: int) -> None:
    """The block/chunk schedule is pure scheduling: every pixel equals the straightforward
    whole-batch evaluation's, the baseline `make bench` reports its speed-up against."""
    scenes = W.sample_scenes(W._rng(11, n), n, W.combos_of("all"), shapes=np.arange(len(ALL_SHAPES)))
    assert set(np.unique(scenes.texture)) == set(range(len(TEXTURES)))  # every texture drawn
    assert torch.equal(render(scenes, size), _whole_batch_renderer().render(scenes, size))


def test_images_are_uint8_and_show_the_scene_colour() -> None:
    scenes = W.sample_scenes(W._rng(9, 1), 400, W.combos_of("all"))
    small = render(W.sample_scenes(W._rng(9, 2), 50, W.combos_of("all")), 64)
    assert small.dtype == torch.uint8 and small.shape == (50, 3, 64, 64)
    images = render(scenes, 32)
    assert images.dtype == torch.uint8 and images.shape == (400, 3, 32, 32)
    # The centre pixel lies inside every pretraining shape except the ring (a hole there).
    keep = scenes.shape != ALL_SHAPES.index("ring")
    col = np.clip((scenes.centre[:, 0] * 32).astype(int), 0, 31)
    row = np.clip((scenes.centre[:, 1] * 32).astype(int), 0, 31)
    pixel = images[np.arange(400), :, row, col].float() / 255.0  # (N, 3)
    nearest = torch.cdist(pixel, colour_table()).argmin(dim=1).numpy()
    accuracy = (nearest == scenes.colour)[keep].mean()
    assert accuracy > 0.9, accuracy


def test_empty_batch() -> None:
    scenes = W.sample_scenes(W._rng(0, 0), 0, W.combos_of("all"))
    assert render(scenes, 32).shape == (0, 3, 32, 32)
    texts, mentions = W.caption_batch(scenes, W._rng(0, 1))
    assert texts == [] and len(mentions) == 0
