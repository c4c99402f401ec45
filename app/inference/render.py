"""Pictures for people: Grad-CAM overlays, RGBA heatmaps, thumbnails, PNG and JPEG bytes.

Every function returns a new array; the image passed in is never written to.
"""

from __future__ import annotations

import cv2
import numpy as np

from app.preprocess import ensure_rgb_uint8

DEFAULT_OPACITY = 0.45
THUMBNAIL_SIDE = 192
# Thumbnails are only for finding an image in the strip: JPEG at this quality is a quarter of
# the PNG's size and several times faster to write. Display copies stay lossless PNG.
THUMBNAIL_JPEG_QUALITY = 85


def cam_levels(cam: np.ndarray) -> np.ndarray:
    """[0, 1] map → uint8 0..255: above 1 → 255; negatives, NaN and ±inf → 0.

    A non-finite cell is a failed computation, never "maximally relevant", so it renders
    cold. This is done in numpy on purpose: OpenCV's ``max(NaN, 0)`` returns 0 in its SIMD
    body but NaN in its scalar tail on some versions (OpenCV 5), so a NaN cell's colour
    would depend on its position in the array and on the installed OpenCV.
    """
    cam = np.asarray(cam, dtype=np.float32)
    if cam.ndim != 2:
        raise ValueError(f"a CAM must be a 2-D map, got shape {cam.shape}")
    levels = np.nan_to_num(cam, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(levels, 0.0, 1.0, out=levels)
    levels *= np.float32(255.0)
    # rint rounds half to even, as OpenCV's saturate_cast did (0.5 → 128 either way).
    return np.rint(levels, out=levels).astype(np.uint8)


def _jet(levels: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.applyColorMap(levels, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def colormap(cam: np.ndarray) -> np.ndarray:
    """[0, 1] map → H×W×3 uint8 RGB in the jet colour map (blue cold, red hot)."""
    return _jet(cam_levels(cam))


def heatmap_rgba(cam: np.ndarray) -> np.ndarray:
    """H×W×4 uint8: colour from the map, alpha = the map, so cold areas stay see-through.

    A browser can draw it over the original with any opacity; ``overlay`` composites the
    same way on the server.
    """
    levels = cam_levels(cam)
    return cv2.merge([*cv2.split(_jet(levels)), levels])


def overlay(image: np.ndarray, cam: np.ndarray, opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """The image with the heatmap blended in: per-pixel weight ``opacity × cam``."""
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be between 0 and 1, got {opacity}")
    rgb = ensure_rgb_uint8(image)
    levels = cam_levels(cam)
    if levels.shape != rgb.shape[:2]:
        raise ValueError(f"CAM shape {levels.shape} does not match image shape {rgb.shape[:2]}")
    # The weight comes from the same 8-bit levels as the RGBA heatmap's alpha, so the
    # server's overlay and a browser's compositing of that heatmap agree.
    weight = levels.astype(np.float32) * np.float32(opacity / 255.0)
    # OpenCV's per-pixel blend (w1·a + w2·b)/(w1 + w2) with w1 + w2 = 1: one pass in C++,
    # several times faster than the same expression with numpy temporaries.
    return cv2.blendLinear(rgb, _jet(levels), np.float32(1.0) - weight, weight)


def thumbnail(image: np.ndarray, max_side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """Shrink so the longer side is at most ``max_side``, keeping the aspect ratio; never enlarge.
    RGB, except that an H×W uint8 grey plane stays one (a third of the work; OpenCV's area filter
    gives each channel of the RGB version the same values)."""
    if max_side < 1:
        raise ValueError("max_side must be at least 1")
    rgb = image if image.ndim == 2 and image.dtype == np.uint8 else ensure_rgb_uint8(image)
    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return rgb.copy()
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def encode_png(array: np.ndarray) -> bytes:
    """uint8 grey, RGB or RGBA array → PNG bytes."""
    if array.dtype != np.uint8:
        raise ValueError(f"PNG encoding needs uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGRA)
    elif array.ndim != 2:
        raise ValueError(f"cannot encode an array of shape {array.shape} as PNG")
    ok, encoded = cv2.imencode(".png", array)
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()


def grey_if_equal(rgb: np.ndarray) -> np.ndarray:
    """H×W×3 with R = G = B everywhere (B-mode ultrasound) → its H×W grey plane; else unchanged.

    A grey PNG holds the same pixels in a third of the bytes, and is written and read back about
    three times faster; ``cv2.imdecode(..., IMREAD_COLOR)`` gives the identical RGB array again.
    """
    if rgb.ndim == 3 and rgb.shape[2] == 3:
        grey = rgb[:, :, 0]
        if np.array_equal(grey, rgb[:, :, 1]) and np.array_equal(grey, rgb[:, :, 2]):
            return np.ascontiguousarray(grey)
    return rgb


def encode_display_png(image: np.ndarray) -> bytes:
    """Lossless PNG of a display image, written grey when its three channels are equal."""
    return encode_png(grey_if_equal(ensure_rgb_uint8(image)))


def encode_jpeg(array: np.ndarray, quality: int = THUMBNAIL_JPEG_QUALITY) -> bytes:
    """uint8 grey or RGB array → JPEG bytes (thumbnails only; never for anything analysed)."""
    if array.dtype != np.uint8:
        raise ValueError(f"JPEG encoding needs uint8, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    elif array.ndim != 2:
        raise ValueError(f"cannot encode an array of shape {array.shape} as JPEG")
    ok, encoded = cv2.imencode(".jpg", array, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return encoded.tobytes()
