"""Vectorised rendering of ToyWorld scenes: one shape on a textured, tinted, noisy background.

Every shape is a signed-distance-like function of normalised, rotated coordinates (unit = the
shape's radius); the mask is an anti-aliased step of that distance measured in pixels. All
samples of one shape (or texture) are evaluated together as one tensor expression, so a batch
of thousands of images costs a few hundred tensor ops rather than a Python loop per image.

Speed without changing a pixel: ToyCLIP is pretrained on this exact output, so the schedule
below (blocks of ~2k images, compositing chunks of ~64 images that stay in cache, only the rows
of a shape computed for that shape) keeps every float32 operation of the straightforward
whole-batch evaluation and the order in which the noise generator is consumed. At 32 px about
40% of the time is the pixel noise (`torch.randn`, whose random stream must not change).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from cliplab.toyworld.vocabulary import ALL_SHAPES, COLOURS, TEXTURES

_SQRT_HALF = math.sqrt(0.5)


def _circle(u: Tensor, v: Tensor) -> Tensor:
    return torch.sqrt(u * u + v * v) - 0.95


def _square(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum(u.abs(), v.abs()) - 0.78


def _triangle(u: Tensor, v: Tensor) -> Tensor:
    v = v + 0.15
    return torch.maximum(torch.maximum(-v - 0.5, 0.866 * u + 0.5 * v - 0.5), -0.866 * u + 0.5 * v - 0.5)


def _star(u: Tensor, v: Tensor) -> Tensor:
    theta = torch.atan2(v, u)
    k = 0.5 * (1.0 + torch.cos(5.0 * (theta - math.pi / 2)))
    return (torch.sqrt(u * u + v * v) - (0.40 + 0.58 * k * k)) * 0.6


def _cross(u: Tensor, v: Tensor) -> Tensor:
    a, b = u.abs(), v.abs()
    return torch.minimum(torch.maximum(a - 0.3, b - 0.95), torch.maximum(a - 0.95, b - 0.3))


def _ring(u: Tensor, v: Tensor) -> Tensor:
    return (torch.sqrt(u * u + v * v) - 0.72).abs() - 0.24


def _diamond(u: Tensor, v: Tensor) -> Tensor:
    return (u.abs() + v.abs() - 1.0) * _SQRT_HALF


def _heart(u: Tensor, v: Tensor) -> Tensor:
    lobes = (
        torch.minimum(torch.sqrt((u - 0.38) ** 2 + (v - 0.32) ** 2), torch.sqrt((u + 0.38) ** 2 + (v - 0.32) ** 2))
        - 0.44
    )
    point = torch.maximum((u.abs() + (v - 0.1).abs() - 0.85) * _SQRT_HALF, v - 0.35)
    return torch.minimum(lobes, point)


def _crescent(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum(torch.sqrt(u * u + v * v) - 0.95, 0.78 - torch.sqrt((u - 0.42) ** 2 + (v - 0.18) ** 2))


def _arrow(u: Tensor, v: Tensor) -> Tensor:
    shaft = torch.maximum(v.abs() - 0.18, (u + 0.3).abs() - 0.6)
    head = torch.maximum(torch.maximum(0.1 - u, 0.6 * u + 0.8 * v - 0.57), 0.6 * u - 0.8 * v - 0.57)
    return torch.minimum(shaft, head)


def _hourglass(u: Tensor, v: Tensor) -> Tensor:
    return torch.maximum((u.abs() - 0.85 * v.abs()) * 0.76, v.abs() - 0.9)


def _semicircle(u: Tensor, v: Tensor) -> Tensor:
    v = v + 0.4
    return torch.maximum(torch.sqrt(u * u + v * v) - 0.95, -v)


def _tee(u: Tensor, v: Tensor) -> Tensor:
    bar = torch.maximum(u.abs() - 0.9, (v - 0.65).abs() - 0.22)
    stem = torch.maximum(u.abs() - 0.22, (v + 0.1).abs() - 0.75)
    return torch.minimum(bar, stem)


def _ell(u: Tensor, v: Tensor) -> Tensor:
    upright = torch.maximum((u + 0.5).abs() - 0.22, v.abs() - 0.9)
    foot = torch.maximum((u - 0.05).abs() - 0.75, (v + 0.68).abs() - 0.22)
    return torch.minimum(upright, foot)


SHAPE_FUNCTIONS = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "ring": _ring,
    "diamond": _diamond,
    "heart": _heart,
    "crescent": _crescent,
    "arrow": _arrow,
    "hourglass": _hourglass,
    "semicircle": _semicircle,
    "tee": _tee,
    "ell": _ell,
}
assert list(SHAPE_FUNCTIONS) == ALL_SHAPES

_COLOUR_TABLE = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
TEXTURE_NAMES = list(TEXTURES)


@dataclass
class Scene:
    """Everything needed to draw a batch of N scenes (numpy arrays, one row per image).

    Categorical attributes are indices: `shape` into `ALL_SHAPES`, `colour` into `COLOURS`,
    `size` into `SIZES`, `position` into `POSITIONS`, `texture` into `TEXTURES`. The continuous
    fields are the nuisance variables that make the world not trivially separable.
    """

    shape: np.ndarray
    colour: np.ndarray
    size: np.ndarray
    position: np.ndarray
    texture: np.ndarray
    radius: np.ndarray  # fraction of the image side
    centre: np.ndarray  # (N, 2) x, y as fractions of the image side
    rotation: np.ndarray  # radians
    fg_rgb: np.ndarray  # (N, 3) jittered foreground colour
    bg_rgb: np.ndarray  # (N, 3) tinted background colour
    texture_contrast: np.ndarray
    texture_frequency: np.ndarray  # cycles per image
    texture_angle: np.ndarray
    noise_std: np.ndarray
    seed: int  # seeds the per-pixel noise

    def __len__(self) -> int:
        return len(self.shape)


def _t(a: np.ndarray) -> Tensor:
    return torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)


# Rendering runs block by block (a few thousand images) and composites each block chunk by chunk
# (a few dozen images), so intermediates stay in cache and no full-size float buffer is ever
# allocated. Both are pure scheduling: every pixel goes through the same float32 operations as
# a whole-batch evaluation. Chunks are multiples of 16 images (see `_chunks`).
_CHUNK_PIXELS = 1 << 16
_BLOCK_PIXELS = 1 << 21
_RANDN_BLOCK = 16


@dataclass
class _Group:
    """One shape or texture class: its scene rows (ascending) and tensors precomputed for them."""

    index: int
    rows: np.ndarray
    pre: dict[str, Tensor]

    def within(self, a: int, b: int) -> tuple[int, int]:
        """Positions [lo, hi) in `rows` of the rows that fall in images [a, b)."""
        lo, hi = np.searchsorted(self.rows, (a, b))
        return int(lo), int(hi)


def _groups(labels: np.ndarray, count: int) -> list[_Group]:
    """The classes present in `labels`, in class order, each with its rows in ascending order."""
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(count + 1))
    present = [k for k in range(count) if bounds[k + 1] > bounds[k]]
    return [_Group(k, order[bounds[k] : bounds[k + 1]], {}) for k in present]


@dataclass
class _ShapeParams:
    """Per-scene shape parameters as (N, 1, 1) float32 tensors, plus the shape groups."""

    centre: Tensor  # (N, 2)
    radius: Tensor
    radius_px: Tensor
    cos: Tensor
    sin: Tensor
    groups: list[_Group]

    @classmethod
    def of(cls, scene: Scene, s: int) -> _ShapeParams:
        radius, rot = _t(scene.radius)[:, None, None], _t(scene.rotation)[:, None, None]
        return cls(
            _t(scene.centre),
            radius,
            radius * s,
            torch.cos(rot),
            torch.sin(rot),
            _groups(np.asarray(scene.shape), len(ALL_SHAPES)),
        )


def _rotated_coords(p: _ShapeParams, rows: Tensor, xs: Tensor) -> tuple[Tensor, Tensor]:
    """Shape-frame coordinates (u, v), shape (k, S, S), of the scenes `rows`.

    Same float32 operations, in the same order, as evaluating them for all N scenes and
    indexing afterwards (bit-identical), without computing the rows that are not needed.
    """
    centre, radius, cos, sin = p.centre[rows], p.radius[rows], p.cos[rows], p.sin[rows]
    dx = (xs[None, None, :] - centre[:, 0, None, None]) / radius
    dy = (centre[:, 1, None, None] - xs[None, :, None]) / radius  # v points up
    return torch.add(cos * dx, sin * dy), torch.add(-sin * dx, cos * dy)


def _mask_block(p: _ShapeParams, xs: Tensor, a: int, b: int, out: Tensor) -> Tensor:
    """Anti-aliased foreground masks in [0, 1] of images [a, b), written into `out` (b - a, S, S)."""
    for group in p.groups:
        lo, hi = group.within(a, b)
        if hi == lo:
            continue
        rows = torch.from_numpy(group.rows[lo:hi])
        distance_px = SHAPE_FUNCTIONS[ALL_SHAPES[group.index]](*_rotated_coords(p, rows, xs))
        distance_px.mul_(p.radius_px[rows]).neg_().add_(0.5).clamp_(0.0, 1.0)  # 0.5 - d, exactly
        out.index_copy_(0, rows - a, distance_px)
    return out


def _texture_groups(scene: Scene, xs: Tensor, generator: torch.Generator) -> list[_Group]:
    """Texture groups with their per-scene inputs, computed once over each whole group.

    Whole-group evaluation keeps the transcendental calls on exactly the tensors a whole-batch
    render uses, and draws the 'noisy' texture's coarse grid (the only use of `generator`
    before the pixel noise) in the same order.
    """
    freq = _t(scene.texture_frequency)[:, None, None]
    angle = _t(scene.texture_angle)[:, None, None]
    x, y = xs[None, None, :], xs[None, :, None]
    groups = _groups(np.asarray(scene.texture), len(TEXTURE_NAMES))
    for group in groups:
        rows = torch.from_numpy(group.rows)
        f, a = freq[rows], angle[rows]
        name = TEXTURE_NAMES[group.index]
        if name in ("striped", "gradient"):
            group.pre.update(f=f, cos=torch.cos(a), sin=torch.sin(a))
        elif name == "checkered":
            group.pre.update(sx=torch.sin(2 * math.pi * f * x), sy=torch.sin(2 * math.pi * f * y))
        elif name == "dotted":
            group.pre.update(f=f)
        elif name == "noisy":
            group.pre.update(coarse=torch.rand(len(rows), 1, 8, 8, generator=generator) * 2 - 1)
    return groups


def _texture(name: str, pre: dict[str, Tensor], xs: Tensor) -> Tensor:
    """Pattern in [-1, 1], shape (k, S, S), of k scenes of one non-plain texture."""
    s = xs.numel()
    x, y = xs[None, None, :], xs[None, :, None]
    if name == "striped":
        along = torch.add(x * pre["cos"], y * pre["sin"])
        return along.mul_(2 * math.pi * pre["f"]).sin_().mul_(3.0).clamp_(-1, 1)
    if name == "checkered":
        return (4.0 * pre["sx"] * pre["sy"]).clamp_(-1, 1)
    if name == "dotted":
        f = pre["f"]
        fx, fy = torch.frac(f * x) - 0.5, torch.frac(f * y) - 0.5
        dist = torch.add(fx * fx, fy * fy).sqrt_()
        return dist.neg_().add_(0.3).mul_(s).div_(f).mul_(0.5).clamp_(-1, 1).mul_(2).sub_(1)
    if name == "noisy":
        return torch.nn.functional.interpolate(pre["coarse"], size=(s, s), mode="bilinear")[:, 0]
    if name == "gradient":
        along = torch.add(x * pre["cos"], y * pre["sin"])
        return along.sub_(along.mean(dim=(1, 2), keepdim=True)).mul_(2.0)
    raise ValueError(f"unknown texture {name!r}")


def _pattern_block(groups: list[_Group], xs: Tensor, a: int, b: int, out: Tensor) -> Tensor:
    """Background patterns in [-1, 1] of images [a, b), written into `out` (b - a, S, S).

    Plain backgrounds (and, as before, any unknown texture label) get a zero pattern.
    """
    out.zero_()
    for group in groups:
        lo, hi = group.within(a, b)
        name = TEXTURE_NAMES[group.index]
        if hi > lo and name != "plain":
            rows = torch.from_numpy(group.rows[lo:hi]) - a
            out.index_copy_(0, rows, _texture(name, {k: t[lo:hi] for k, t in group.pre.items()}, xs))
    return out


def _chunks(n: int, s: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges for compositing: 16-image multiples, last one >= 16 samples.

    torch's CPU randn fills a float tensor in blocks of 16 samples (redrawing the last 16 when
    the size is not a multiple of 16), so drawing (N, 3, S, S) noise chunk by chunk with these
    boundaries consumes the generator exactly like one draw and yields the same numbers.
    """
    step = max(_RANDN_BLOCK, _CHUNK_PIXELS // (s * s) // _RANDN_BLOCK * _RANDN_BLOCK)
    bounds = list(range(0, n, step)) + [n]
    if len(bounds) > 2 and (bounds[-1] - bounds[-2]) * 3 * s * s < _RANDN_BLOCK:
        del bounds[-2]
    return list(itertools.pairwise(bounds))


def _blocks(n: int, s: int) -> list[list[tuple[int, int]]]:
    """Compositing chunks grouped into blocks of about `_BLOCK_PIXELS` pixels.

    Splitting a group's (k, S, S) evaluation into blocks changes only where torch's vectorised
    loops end; a loop's tail (its last numel % 32 elements) runs scalar code whose sin, atan2,
    ... may differ from the vector code in the last bit. With S * S a multiple of 64 no block
    boundary creates a tail, so blocks are used only then; otherwise everything is one block.
    """
    chunks = _chunks(n, s)
    per_block = max(1, _BLOCK_PIXELS // (s * s) // max(1, chunks[0][1] - chunks[0][0])) if chunks else 1
    if (s * s) % 64:
        per_block = max(1, len(chunks))
    return [chunks[i : i + per_block] for i in range(0, len(chunks), per_block)]


@dataclass
class _Colours:
    """Per-scene compositing parameters as (N, C, 1, 1) float32 tensors."""

    contrast: Tensor
    bg: Tensor
    fg: Tensor
    std: Tensor

    @classmethod
    def of(cls, scene: Scene) -> _Colours:
        return cls(
            _t(scene.texture_contrast)[:, None, None, None],
            _t(scene.bg_rgb)[:, :, None, None],
            _t(scene.fg_rgb)[:, :, None, None],
            _t(scene.noise_std)[:, None, None, None],
        )


def _composite_chunk(
    c: _Colours, a: int, b: int, mask: Tensor, pattern: Tensor, buffers: Tensor, generator: torch.Generator
) -> Tensor:
    """Tint, texture, blend and add pixel noise to images [a, b); returns floats ready to truncate.

    `mask` and `pattern` are the (b - a, S, S) layers; `buffers` is (2, >= b - a, 3, S, S) scratch.
    """
    image, noise = buffers[0, : b - a], buffers[1, : b - a]
    torch.mul(c.bg[a:b], c.contrast[a:b] * pattern[:, None] + 1.0, out=image)
    image.lerp_(c.fg[a:b], mask[:, None])
    torch.randn(noise.shape, generator=generator, out=noise)
    return image.add_(noise.mul_(c.std[a:b])).clamp_(0.0, 1.0).mul_(255.0).add_(0.5)


def render(scene: Scene, image_size: int = 32) -> Tensor:
    """Draw the scenes as a uint8 tensor (N, 3, S, S). Deterministic given the scene."""
    n, s = len(scene), image_size
    generator = torch.Generator().manual_seed(int(scene.seed))
    xs = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size
    shapes, colours = _ShapeParams.of(scene, s), _Colours.of(scene)
    textures = _texture_groups(scene, xs, generator)
    out = torch.empty(n, 3, s, s, dtype=torch.uint8)
    blocks = _blocks(n, s)
    block_len = max((blk[-1][1] - blk[0][0] for blk in blocks), default=0)
    layers = torch.empty(2, block_len, s, s)
    buffers = torch.empty(2, max((b - a for blk in blocks for a, b in blk), default=0), 3, s, s)
    out_np = out.numpy()
    for chunks in blocks:
        start, stop = chunks[0][0], chunks[-1][1]
        mask = _mask_block(shapes, xs, start, stop, layers[0, : stop - start])
        pattern = _pattern_block(textures, xs, start, stop, layers[1, : stop - start])
        for a, b in chunks:
            rows = slice(a - start, b - start)
            image = _composite_chunk(colours, a, b, mask[rows], pattern[rows], buffers, generator)
            np.copyto(out_np[a:b], image.numpy(), casting="unsafe")  # truncation, as .to(uint8); 4x faster
    return out


def colour_table() -> Tensor:
    """The canonical RGB of every colour, in `COLOURS` order."""
    return _COLOUR_TABLE.clone()
