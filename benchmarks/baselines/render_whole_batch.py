"""Baseline for `toyworld_generation.py --baseline`: ToyWorld's whole-batch renderer.

This is `cliplab.toyworld.render.render` as first written: every scene of the batch evaluated as
one tensor expression per shape and texture, with full-size (N, S, S) float buffers. The package's
renderer schedules the same float32 operations block by block and chunk by chunk (same pixels,
bit for bit; `tests/test_toyworld.py`), which is the speed-up `make bench` reports. The shape
functions, tables and `Scene` are the package's own: only the driver below differs.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from cliplab.toyworld.render import ALL_SHAPES, SHAPE_FUNCTIONS, TEXTURE_NAMES, Scene, _t


def _shape_masks(scene: Scene, xs: Tensor) -> Tensor:
    """Anti-aliased foreground masks in [0, 1], shape (N, S, S)."""
    n, s = len(scene), xs.numel()
    radius, rot = _t(scene.radius)[:, None, None], _t(scene.rotation)[:, None, None]
    centre = _t(scene.centre)
    dx = (xs[None, None, :] - centre[:, 0, None, None]) / radius
    dy = (centre[:, 1, None, None] - xs[None, :, None]) / radius  # v points up
    cos, sin = torch.cos(rot), torch.sin(rot)
    u, v = cos * dx + sin * dy, -sin * dx + cos * dy
    mask = torch.empty(n, s, s)
    radius_px = radius * s
    for index, name in enumerate(ALL_SHAPES):
        rows = np.flatnonzero(scene.shape == index)
        if rows.size == 0:
            continue
        rows_t = torch.from_numpy(rows)
        distance_px = SHAPE_FUNCTIONS[name](u[rows_t], v[rows_t]) * radius_px[rows_t]
        mask[rows_t] = (0.5 - distance_px).clamp_(0.0, 1.0)
    return mask


def _texture_patterns(scene: Scene, xs: Tensor, generator: torch.Generator) -> Tensor:
    """Background patterns in [-1, 1], shape (N, S, S)."""
    n, s = len(scene), xs.numel()
    pattern = torch.zeros(n, s, s)
    freq = _t(scene.texture_frequency)[:, None, None]
    angle = _t(scene.texture_angle)[:, None, None]
    x, y = xs[None, None, :], xs[None, :, None]
    for index, name in enumerate(TEXTURE_NAMES):
        rows = torch.from_numpy(np.flatnonzero(scene.texture == index))
        if rows.numel() == 0 or name == "plain":
            continue
        f, a = freq[rows], angle[rows]
        along = x * torch.cos(a) + y * torch.sin(a)
        if name == "striped":
            pattern[rows] = (3.0 * torch.sin(2 * math.pi * f * along)).clamp(-1, 1)
        elif name == "checkered":
            pattern[rows] = (4.0 * torch.sin(2 * math.pi * f * x) * torch.sin(2 * math.pi * f * y)).clamp(-1, 1)
        elif name == "dotted":
            fx, fy = torch.frac(f * x) - 0.5, torch.frac(f * y) - 0.5
            pattern[rows] = ((0.3 - torch.sqrt(fx * fx + fy * fy)) * s / f * 0.5).clamp(-1, 1) * 2 - 1
        elif name == "noisy":
            coarse = torch.rand(rows.numel(), 1, 8, 8, generator=generator) * 2 - 1
            pattern[rows] = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear")[:, 0]
        elif name == "gradient":
            pattern[rows] = 2.0 * (along - along.mean(dim=(1, 2), keepdim=True))
    return pattern


def render(scene: Scene, image_size: int = 32) -> Tensor:
    """Draw the scenes as a uint8 tensor (N, 3, S, S). Deterministic given the scene."""
    generator = torch.Generator().manual_seed(int(scene.seed))
    xs = (torch.arange(image_size, dtype=torch.float32) + 0.5) / image_size
    mask = _shape_masks(scene, xs)[:, None]
    pattern = _texture_patterns(scene, xs, generator)[:, None]
    contrast = _t(scene.texture_contrast)[:, None, None, None]
    background = _t(scene.bg_rgb)[:, :, None, None] * (1.0 + contrast * pattern)
    image = torch.lerp(background, _t(scene.fg_rgb)[:, :, None, None], mask)
    noise = torch.randn(image.shape, generator=generator) * _t(scene.noise_std)[:, None, None, None]
    return (image.add_(noise).clamp_(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
