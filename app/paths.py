"""Where fetalcns finds its files, the same from whichever folder it is started.

Two kinds of place:
- resources that ship with the code (migrations/, templates/, static/, models/): beside the
  ``app`` package in a source checkout or editable install, and in ``<prefix>/share/fetalcns``
  when installed from a wheel (pyproject.toml's data-files put them there);
- the data a server writes (database, image store, secret key): ``var/`` of the source
  checkout it runs from, else the user's data folder (``$XDG_DATA_HOME/fetalcns``).
  ``FETALCNS_DATA_DIR`` overrides it; a relative value is taken from the current folder once,
  when the settings are read.
"""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

PACKAGE_NAME = "fetalcns"
DEFAULT_MODEL_NAME = "fetal-cns-demo"
# The folders that ship with the code, and so may live in a checkout or under share/.
RESOURCE_DIRS = ("migrations", "templates", "static", "models")

_SOURCE_ROOT = Path(__file__).resolve().parents[1]


def source_root() -> Path | None:
    """The checkout this package runs from (its pyproject.toml names fetalcns), or None."""
    pyproject = _SOURCE_ROOT / "pyproject.toml"
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return None
    return _SOURCE_ROOT if f'name = "{PACKAGE_NAME}"' in text else None


def installed_share_dir() -> Path:
    """``<prefix>/share/fetalcns``: where a wheel install puts the resource folders."""
    return Path(sysconfig.get_path("data")) / "share" / PACKAGE_NAME


def resource_dir(name: str) -> Path:
    """One of RESOURCE_DIRS: the checkout's copy first, else the installed copy.

    When neither exists the checkout-relative path is returned, so that the caller's
    "missing" message names a real place.
    """
    if name not in RESOURCE_DIRS:
        raise ValueError(f"unknown resource folder {name!r}; expected one of {', '.join(RESOURCE_DIRS)}")
    root = source_root()
    candidates = ([root / name] if root else []) + [installed_share_dir() / name]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]


def default_model_dir() -> Path:
    """The bundled demo model."""
    return resource_dir("models") / DEFAULT_MODEL_NAME


def default_data_dir() -> Path:
    """``var/`` of the checkout, else ``$XDG_DATA_HOME/fetalcns`` (``~/.local/share/fetalcns``)."""
    root = source_root()
    if root is not None:
        return root / "var"
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / PACKAGE_NAME
