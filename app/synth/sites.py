"""Sites: a scanner and its preset, so that a benchmark can span several hospitals.

A model trained on one scanner's images learns its speckle, grey map, text layout
and crop box along with the anatomy; a site-aware benchmark shows whether that
matters. Each `Site` fixes the probe geometry, the imaging settings (ranges a
sonographer moves within) and the display. The names are fictional; no site
imitates a real vendor's screen.

The "default" site is the one the generator always used, so a site-less run
gives byte-identical output to earlier versions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.synth.geometry import Sector

CURVILINEAR = "curvilinear"
PHASED = "phased"
LINEAR = "linear"

GREY = "grey"
SEPIA = "sepia"
BLUE = "blue"
# Channel gains of the tinted grey maps. Each is a single hue (sepia about 33°, blue about
# 216°), so even when most pixels count as coloured the hue entropy stays near zero and
# app/inference/image_kind.py still calls the image an ultrasound scan.
TINTS: dict[str, tuple[float, float, float]] = {
    GREY: (1.0, 1.0, 1.0),
    SEPIA: (1.0, 0.84, 0.64),
    BLUE: (0.75, 0.85, 1.0),
}

CLASSIC = "classic"  # header top left, date top right, settings bottom left, ruler right
MIRRORED = "mirrored"  # header top right, date top left, settings bottom right, ruler left
FOOTER = "footer"  # header along the bottom, settings top left, date top right, ruler right
LAYOUTS = (CLASSIC, MIRRORED, FOOTER)

Range = tuple[float, float]


@dataclass(frozen=True)
class Site:
    name: str
    description: str
    # Probe and geometry.
    probe: str
    probe_label: str  # burned into the settings line
    frequency_mhz: float  # sets speckle grain size and attenuation
    sector: Sector
    lateral_jitter_rad: float = 0.12  # how far off the probe axis the structure may sit
    zoom: float = 1.0  # multiplies the fraction of the depth the structure spans
    # Imaging settings: each image draws its own value from these ranges.
    attenuation_per_mm: Range = (0.008, 0.016)
    gain_compensation: Range = (0.7, 0.95)
    dynamic_range_db: Range = (34.0, 42.0)
    gain_db: Range = (-2.0, 2.0)
    # Display.
    colour_map: str = GREY
    text_colour: tuple[int, int, int] = (200, 200, 200)
    layout: str = CLASSIC
    caliper_probability: float = 0.0  # chance that an image carries measurement calipers
    orientation_marker: bool = False  # the probe-side dot or logo beside the sector

    @property
    def speckle_sigma(self) -> tuple[float, float]:
        """Lateral and axial speckle grain (px): coarser at lower frequency (longer wavelength)."""
        scale = (3.5 / self.frequency_mhz) ** 0.7
        return 1.1 * scale, 0.8 * scale

    @property
    def coloured(self) -> bool:
        return self.colour_map != GREY or self.text_colour[0] != self.text_colour[1]


DEFAULT_SITE = Site(
    name="default",
    description="curvilinear 3.5 MHz, grey, classic layout (the generator's original look)",
    probe=CURVILINEAR,
    probe_label="C5-1",
    frequency_mhz=3.5,
    sector=Sector(),
)

SITES: dict[str, Site] = {
    site.name: site
    for site in (
        Site(
            name="A",
            description="curvilinear 4 MHz, grey, classic layout, calipers",
            probe=CURVILINEAR,
            probe_label="C6-2",
            frequency_mhz=4.0,
            sector=Sector(apex_y=-50.0, r_min=100.0, r_max=500.0, half_angle_deg=35.0),
            attenuation_per_mm=(0.009, 0.018),
            caliper_probability=0.6,
            orientation_marker=True,
        ),
        Site(
            name="B",
            description="curvilinear 3 MHz, sepia tint, mirrored layout, amber text",
            probe=CURVILINEAR,
            probe_label="CA3",
            frequency_mhz=3.0,
            sector=Sector(apex_x=330.0, apex_y=-80.0, r_min=120.0, r_max=505.0, half_angle_deg=30.0),
            dynamic_range_db=(40.0, 50.0),
            gain_db=(0.0, 5.0),
            colour_map=SEPIA,
            text_colour=(235, 200, 120),
            layout=MIRRORED,
            caliper_probability=0.3,
        ),
        Site(
            name="C",
            description="phased array 2.5 MHz, wide sector from the skin, grey, footer layout",
            probe=PHASED,
            probe_label="P4-1",
            frequency_mhz=2.5,
            sector=Sector(apex_y=20.0, r_min=22.0, r_max=440.0, half_angle_deg=40.0),
            lateral_jitter_rad=0.1,
            attenuation_per_mm=(0.006, 0.012),
            gain_compensation=(0.6, 0.85),
            dynamic_range_db=(30.0, 38.0),
            layout=FOOTER,
            orientation_marker=True,
        ),
        Site(
            name="D",
            description="linear 6 MHz, near-rectangular field, blue tint, classic layout",
            probe=LINEAR,
            probe_label="L9-3",
            frequency_mhz=6.0,
            # A linear array is a sector whose apex lies far above the skin: straight beams.
            sector=Sector(apex_y=-4000.0, r_min=4060.0, r_max=4440.0, half_angle_deg=3.6),
            lateral_jitter_rad=0.012,
            zoom=0.85,
            attenuation_per_mm=(0.012, 0.022),
            gain_compensation=(0.8, 0.95),
            colour_map=BLUE,
            text_colour=(170, 210, 255),
            caliper_probability=0.4,
        ),
        Site(
            name="E",
            description="curvilinear 5 MHz, zoomed, grey, mirrored layout, yellow calipers",
            probe=CURVILINEAR,
            probe_label="C9-4",
            frequency_mhz=5.0,
            sector=Sector(apex_x=300.0, apex_y=-40.0, r_min=90.0, r_max=470.0, half_angle_deg=38.0),
            zoom=1.12,
            attenuation_per_mm=(0.01, 0.02),
            dynamic_range_db=(45.0, 55.0),
            gain_db=(-4.0, 0.0),
            text_colour=(230, 220, 90),
            layout=MIRRORED,
            caliper_probability=0.7,
            orientation_marker=True,
        ),
        Site(
            name="F",
            description="curvilinear 3.5 MHz, narrow deep sector, sepia tint, footer layout",
            probe=CURVILINEAR,
            probe_label="AB2-7",
            frequency_mhz=3.5,
            sector=Sector(apex_x=340.0, apex_y=-70.0, r_min=115.0, r_max=520.0, half_angle_deg=27.0),
            gain_compensation=(0.75, 0.98),
            gain_db=(-3.0, 3.0),
            colour_map=SEPIA,
            layout=FOOTER,
            caliper_probability=0.3,
        ),
    )
}
SITE_MIX_RANDOM = "random"


def get_site(name: str) -> Site:
    if name == DEFAULT_SITE.name:
        return DEFAULT_SITE
    try:
        return SITES[name]
    except KeyError:
        raise ValueError(f"unknown site {name!r}; choose from {', '.join(SITES)}") from None


def site_for_patient(
    index: int, seed: int, n_classes: int, names: Sequence[str] | None, random_mix: bool
) -> Site:
    """The site of patient `index`.

    With a list of sites, consecutive blocks of `n_classes` patients (one of each class,
    see generate_dataset) go to the sites in turn, so every site sees a balanced class
    mix and the site says nothing about the class. A random mix draws each patient's site
    from its own stream (seed, index, 4), used by nothing else.
    """
    if random_mix:
        names = list(SITES)
        return SITES[names[int(np.random.default_rng([seed, index, 4]).integers(len(names)))]]
    if not names:
        return DEFAULT_SITE
    return get_site(names[(index // n_classes) % len(names)])
