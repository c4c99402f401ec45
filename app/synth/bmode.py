"""Echo map → B-mode image: speckle, shadows, attenuation, gain, log compression, scan conversion."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from app.synth.geometry import Sector, sector_maps
from app.synth.sites import DEFAULT_SITE, Site

# Scanners map the weakest echoes to a dark grey pedestal rather than pure black,
# which also keeps anechoic fluid distinguishable from the black background.
PEDESTAL = 16


@dataclass(frozen=True)
class ScannerSettings:
    attenuation_per_mm: float  # round-trip amplitude loss (nepers/mm)
    gain_compensation: float  # fraction of the loss that time-gain compensation restores
    dynamic_range_db: float
    gain_db: float
    speckle_sigma: tuple[float, float] = DEFAULT_SITE.speckle_sigma  # lateral, axial grain (px)

    @classmethod
    def sample(cls, rng: np.random.Generator, site: Site = DEFAULT_SITE) -> ScannerSettings:
        """One image's settings within the site's preset ranges (draw order fixed for reproducibility)."""
        return cls(
            attenuation_per_mm=float(rng.uniform(*site.attenuation_per_mm)),
            gain_compensation=float(rng.uniform(*site.gain_compensation)),
            dynamic_range_db=float(rng.uniform(*site.dynamic_range_db)),
            gain_db=float(rng.uniform(*site.gain_db)),
            speckle_sigma=site.speckle_sigma,
        )


def speckle(
    shape: tuple[int, int], rng: np.random.Generator, sigma: tuple[float, float] = (1.1, 0.8)
) -> np.ndarray:
    """Fully developed speckle: magnitude of band-limited complex Gaussian noise, mean 1.

    Uniform bytes are used as the noise source because blurring them already
    makes them Gaussian (central limit) and they are several times cheaper to
    draw than normal variates. The blur is wider across beams than along them:
    lateral resolution is worse than axial, which stretches speckle grains sideways.
    """
    raw = np.frombuffer(rng.bytes(2 * shape[0] * shape[1]), np.uint8).reshape(2, *shape)
    parts = [
        cv2.GaussianBlur(part.astype(np.float32) - 127.5, (0, 0), sigmaX=sigma[0], sigmaY=sigma[1])
        for part in raw
    ]
    magnitude = cv2.magnitude(parts[0], parts[1])
    return magnitude / np.float32(magnitude.mean())


def to_bmode(
    echo: np.ndarray,
    absorption: np.ndarray,
    sector: Sector,
    depth_mm: float,
    settings: ScannerSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """Simulate acquisition along the beams and scan-convert to a uint8 grey image (0 outside the sector)."""
    maps = sector_maps(sector)
    # The blur stands in for the beam's finite width and keeps thin echoes from aliasing between beams.
    echo = cv2.GaussianBlur(echo, (0, 0), 0.8)
    beam_echo = cv2.remap(echo, *maps.to_beams, cv2.INTER_LINEAR)
    beam_absorb = cv2.remap(absorption, *maps.to_beams, cv2.INTER_LINEAR)
    # Energy reaching a depth is what the tissue above has not absorbed (acoustic shadow).
    passed = np.cumsum(beam_absorb, axis=0)
    transmission = np.exp(-np.vstack([np.zeros((1, passed.shape[1]), np.float32), passed[:-1]]))
    depth = np.linspace(0.0, depth_mm, sector.n_samples, dtype=np.float32)[:, None]
    net_loss = settings.attenuation_per_mm * (1.0 - settings.gain_compensation)
    gain = np.exp(-net_loss * depth) * np.float32(10 ** (settings.gain_db / 20))
    lateral = np.linspace(-1, 1, sector.n_beams, dtype=np.float32)[None, :]
    apodisation = 1.0 - 0.25 * lateral**4
    grains = speckle(beam_echo.shape, rng, settings.speckle_sigma)
    signal = beam_echo * transmission * gain * apodisation * grains
    # Electronic noise floor; the mirrored speckle field is uncorrelated with the tissue's at each pixel.
    signal += 0.01 * grains[:, ::-1]
    db = 20.0 * np.log10(signal + 1e-6)
    top = 4.0
    level = np.clip((db - (top - settings.dynamic_range_db)) / settings.dynamic_range_db, 0.0, 1.0)
    grey = PEDESTAL + (255 - PEDESTAL) * level
    grey_u8 = (grey + 0.5).astype(np.uint8)
    image = np.zeros((sector.height, sector.width), np.uint8)
    top, bottom, left, right = maps.box
    image[top:bottom, left:right] = cv2.remap(
        grey_u8, *maps.to_image, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    image[~maps.mask] = 0
    return image
