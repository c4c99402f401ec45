"""PNG files that say they are synthetic, written byte-for-byte reproducibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

SYNTHETIC_NOTICE = "synthetic phantom - fetalcns synth - not a patient image"


def write_png(
    path: Path, pixels: np.ndarray, description: str, compress_level: int = 1, palette: int = 0
) -> None:
    """Save a uint8 grey or RGB image with tEXt chunks; Pillow adds no timestamp, so bytes are stable.

    Datasets use fast level 1 and exact pixels. The docs' contact sheet uses level 9 and a
    `palette` of that many colours (median cut, no dither: deterministic) to stay small in
    the repository.
    """
    info = PngInfo()
    info.add_text("Source", "fetalcns synth")
    info.add_text("Comment", SYNTHETIC_NOTICE)
    info.add_text("Description", description)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(pixels)
    if palette:
        image = image.convert("RGB").quantize(
            palette, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
        )
    image.save(path, format="PNG", pnginfo=info, compress_level=compress_level)
