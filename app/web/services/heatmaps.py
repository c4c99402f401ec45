"""Grad-CAM heatmaps drawn when someone looks, not when the worker analyses.

The worker stores each analysed image's model-resolution map (``ImagePredictionRow.cam``, a
few hundred floats) and the box the model saw (``cam_box``). The RGBA heatmap PNG the viewer
lays over the original is drawn from them on its first view and stored (content-addressed,
``heatmap_key``), so later views read it back; most images of a study are never opened and are
never drawn. Rows stored before migration 0012 carry their PNG already.

The drawing is the one the worker used to do (app.inference.cam.cam_to_image, then
app.inference.render.heatmap_rgba), so a lazily drawn heatmap is byte for byte the eager one.
"""

from __future__ import annotations

import numpy as np

from app.inference.cam import cam_to_image
from app.inference.render import encode_png, heatmap_rgba
from app.web.core.blob_store import BlobStore
from app.web.core.models import Image, ImagePredictionRow


def cam_to_json(model_cam: np.ndarray) -> list[list[float]]:
    """A model-resolution map as JSON numbers: float32 values exactly, non-finite cells as 0
    (what ``cam_to_image`` makes of them anyway; JSON and PostgreSQL have no NaN)."""
    clean = np.nan_to_num(np.asarray(model_cam, np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    rows: list[list[float]] = clean.tolist()  # each float32 widened exactly, as float(v) would
    return rows


def full_size_cam(prediction: ImagePredictionRow, image: Image) -> np.ndarray | None:
    """The stored map at the image's geometry in [0, 1], or None when the row has none."""
    if prediction.cam is None or prediction.cam_box is None:
        return None
    top, bottom, left, right = (int(v) for v in prediction.cam_box)
    return cam_to_image(
        np.asarray(prediction.cam, np.float32), (image.height, image.width), (top, bottom, left, right)
    )


def heatmap_rgba_of(store: BlobStore, prediction: ImagePredictionRow, image: Image) -> np.ndarray | None:
    """The H×W×4 RGBA heatmap (stored PNG, else drawn from the stored map), or None."""
    if prediction.heatmap_key:
        import cv2

        data = np.frombuffer(store.read_bytes(prediction.heatmap_key), np.uint8)
        return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_UNCHANGED), cv2.COLOR_BGRA2RGBA)
    cam = full_size_cam(prediction, image)
    return None if cam is None else heatmap_rgba(cam)


def heatmap_png(store: BlobStore, prediction: ImagePredictionRow, image: Image) -> bytes | None:
    """The heatmap PNG; drawn and stored on first view, ``heatmap_key`` set on the row (the
    caller commits). None when the row has neither a PNG nor a map.

    Two first views at once draw the same bytes and store them under the same key, so the
    race costs one drawing, never a wrong picture.
    """
    if prediction.heatmap_key:
        return store.read_bytes(prediction.heatmap_key)
    cam = full_size_cam(prediction, image)
    if cam is None:
        return None
    data = encode_png(heatmap_rgba(cam))
    prediction.heatmap_key, _ = store.put_bytes(data, "png")
    return data
