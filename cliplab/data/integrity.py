"""Up-front screening of image files, in the main process, before any DataLoader worker sees them.

`find_unreadable` opens every file (`verify="header"`: PIL's `verify()`, cheap, catches
non-images and damaged PNGs, plus a look at a JPEG's last bytes: one cut short lacks its
end-of-image marker and is then fully decoded to decide; `"full"`: verify plus a complete decode of
every file, slower, catches damage in the middle of a JPEG too; `"none"`: no check). A file that
passes and still fails to decode when loaded is skipped there (`cliplab.data.base`).
`screen_images` then applies the `on_corrupt` policy: "skip" drops the files with one warning that
names how many and the first few paths; "error" raises `CorruptImageError` naming the first file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from PIL import Image

from cliplab.data.errors import CorruptImageError, CorruptImageWarning

T = TypeVar("T")

ON_CORRUPT = ("skip", "error")
VERIFY_MODES = ("header", "full", "none")
_SHOWN = 3  # paths quoted in a warning or error


def check_on_corrupt(on_corrupt: str) -> str:
    if on_corrupt not in ON_CORRUPT:
        raise ValueError(f"on_corrupt must be one of {ON_CORRUPT}, got {on_corrupt!r}")
    return on_corrupt


def check_verify(verify: str) -> str:
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    return verify


# (path, mtime_ns, size, verify) -> problem or None: re-opening a dataset does not re-read its files.
_CHECKED: dict[tuple[str, int, int, str], str | None] = {}


def image_problem(path: str | Path, verify: str = "header") -> str | None:
    """Why `path` cannot be read as an image, or None if it can (cached per file version)."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return "file not found"
    key = (str(path), stat.st_mtime_ns, stat.st_size, verify)
    if key not in _CHECKED:
        _CHECKED[key] = _open_problem(path, verify)
    return _CHECKED[key]


_JPEG_START, _JPEG_END = b"\xff\xd8", b"\xff\xd9"


def _cut_jpeg(path: str | Path) -> bool:
    """A JPEG whose end-of-image marker is missing (trailing padding allowed): likely cut short."""
    with open(path, "rb") as handle:
        if handle.read(2) != _JPEG_START:
            return False
        size = handle.seek(0, os.SEEK_END)
        handle.seek(max(0, size - 1024))
        tail = handle.read().rstrip(b"\x00\r\n\t ")
    return not tail.endswith(_JPEG_END)


def _open_problem(path: str | Path, verify: str) -> str | None:
    try:
        with Image.open(path) as image:
            image.verify()  # structure and checksums (e.g. PNG CRCs); does not decode pixels
        if verify == "full" or _cut_jpeg(path):  # a suspect JPEG is decoded: PIL has the last word
            with Image.open(path) as image:
                image.load()  # full decode: catches JPEGs cut short, which verify() accepts
    except FileNotFoundError:
        return "file not found"
    except Exception as error:  # PIL raises OSError, SyntaxError, struct.error, ...: all mean unreadable
        return f"{type(error).__name__}: {error}"
    return None


def find_unreadable(paths: Sequence[str | Path], verify: str = "header") -> dict[str, str]:
    """Map each unreadable path to the reason, in input order (empty when `verify="none"`)."""
    if check_verify(verify) == "none":
        return {}
    problems = ((str(p), image_problem(p, verify)) for p in paths)
    return {path: reason for path, reason in problems if reason is not None}


def screen_images(name: str, paths: Sequence[str | Path], on_corrupt: str, verify: str = "header") -> list[int]:
    """Indices of the readable `paths`; warns about (skip) or raises on (error) the others."""
    check_on_corrupt(on_corrupt)
    bad = find_unreadable(paths, verify)
    if not bad:
        return list(range(len(paths)))
    first, reason = next(iter(bad.items()))
    if on_corrupt == "error":
        raise CorruptImageError(
            f"{name}: unreadable image {first} ({reason}); {len(bad)} of {len(paths)} images are unreadable. "
            f"Pass on_corrupt='skip' to drop them.",
            first,
        )
    if len(bad) == len(paths):
        raise CorruptImageError(f"{name}: all {len(paths)} images are unreadable, e.g. {first} ({reason})", first)
    warnings.warn(corrupt_summary(name, bad, len(paths)), CorruptImageWarning, stacklevel=2)
    return [i for i, p in enumerate(paths) if str(p) not in bad]


def corrupt_summary(name: str, bad: dict[str, str], total: int) -> str:
    """One-line report: how many were skipped and the first few paths with reasons."""
    shown = "; ".join(f"{p} ({r})" for p, r in list(bad.items())[:_SHOWN])
    more = f"; and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    return (
        f"{name}: skipped {len(bad)} unreadable image(s) of {total}: {shown}{more}. "
        f"The dataset's .corrupt attribute lists them all."
    )


def screen_samples(
    name: str, paths: Sequence[str | Path], payloads: Sequence[T], on_corrupt: str, verify: str = "header"
) -> tuple[list[str], list[T], list[str]]:
    """Screen `paths` and keep the matching `payloads` (labels, captions): (paths, payloads, dropped paths)."""
    good = set(screen_images(name, paths, on_corrupt, verify))
    kept = [i for i in range(len(paths)) if i in good]
    dropped = [str(p) for i, p in enumerate(paths) if i not in good]
    return [str(paths[i]) for i in kept], [payloads[i] for i in kept], dropped
