"""Frames are handed to a sink as they are decoded: one frame in memory, identical pixels."""

from __future__ import annotations

import io
import weakref
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit

from app.ingest import IngestedImage, IngestOptions, ingest_paths
from tests.ingest_support import make_us_dataset, phantom, vendor_file, write_dataset
from tests.test_ingest_dicom_vendor import LOSSLESS_SIBLINGS

MULTI_FRAME = ["emri_small.dcm", "OBXXXX1A_rle_2frame.dcm", "SC_rgb_expb_32bit_2frame.dcm"]
VENDOR_FILES = sorted({name for pair in LOSSLESS_SIBLINGS for name in pair} | set(MULTI_FRAME))


class PngSink:
    """What the web upload does: encode each image the moment it arrives, keep only the bytes.

    It also holds a weak reference to every image's pixels, to see what is still alive.
    """

    def __init__(self) -> None:
        self.stored: dict[tuple[str, int | None], bytes] = {}
        self.alive_at_call: list[int] = []
        self._refs: list[weakref.ref[np.ndarray]] = []

    def __call__(self, image: IngestedImage) -> IngestedImage:
        self.alive_at_call.append(sum(ref() is not None for ref in self._refs))
        self._refs.append(weakref.ref(image.pixels))
        ok, png = cv2.imencode(".png", image.pixels)
        assert ok
        self.stored[(image.source, image.frame)] = png.tobytes()
        return image.without_pixels()

    def pixels(self, image: IngestedImage) -> np.ndarray:
        data = np.frombuffer(self.stored[(image.source, image.frame)], np.uint8)
        return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


@pytest.mark.parametrize("name", VENDOR_FILES)
def test_streamed_frames_are_pixel_identical_to_held_ones(name: str) -> None:
    path = vendor_file(name)
    held = ingest_paths([path])
    sink = PngSink()
    streamed = ingest_paths([path], sink=sink)
    assert not held.rejected and not streamed.rejected
    held_images, streamed_images = held.studies[0].images, streamed.studies[0].images
    assert [i.frame for i in held_images] == [i.frame for i in streamed_images]
    for before, after in zip(held_images, streamed_images, strict=True):
        assert after.pixels_dropped and not before.pixels_dropped
        assert after.pixels.shape == before.pixels.shape and (after.width, after.height) == (
            before.width,
            before.height,
        )
        assert after.metadata == before.metadata and after.scan_box == before.scan_box
        np.testing.assert_array_equal(sink.pixels(after), before.pixels)
    # No frame's pixels outlived its trip through the sink: one decoded frame at a time.
    assert sink.alive_at_call == [0] * len(streamed_images)


def test_dropped_pixels_take_no_memory() -> None:
    sink = PngSink()
    result = ingest_paths([vendor_file("emri_small.dcm")], sink=sink)
    for image in result.studies[0].images:
        assert image.pixels.strides == (0, 0, 0) and not image.pixels.flags.writeable
        assert image.height == 64 and image.width == 64


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_a_corrupt_later_frame_rejects_the_file_and_no_streamed_frame_is_kept(tmp_path: Path) -> None:
    ds = make_us_dataset(phantom(seed=1))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.NumberOfFrames = 3
    ds.PixelData = encapsulate([_jpeg(phantom(seed=1)), _jpeg(phantom(seed=2)), b"\xff\xd8 junk \xff\xd9"])
    ds["PixelData"].VR = "OB"
    bad = write_dataset(ds, tmp_path / "cine.dcm")
    good = write_dataset(make_us_dataset(phantom(seed=3), patient_id="OTHER"), tmp_path / "good.dcm")
    sink = PngSink()
    result = ingest_paths([bad, good], sink=sink)
    # The two good frames of the bad file did reach the sink before frame 3 failed ...
    assert {(Path(s).name, f) for s, f in sink.stored} == {
        ("cine.dcm", 0),
        ("cine.dcm", 1),
        ("good.dcm", None),
    }
    # ... but only the good file is in the result, and the bad one is rejected as a whole.
    assert [Path(i.source).name for s in result.studies for i in s.images] == ["good.dcm"]
    assert [(Path(r.source).name, "corrupt" in r.reason) for r in result.rejected] == [("cine.dcm", True)]


def test_a_rejected_file_is_not_a_duplicate_of_its_later_copy(tmp_path: Path) -> None:
    path = write_dataset(make_us_dataset(phantom()), tmp_path / "a.dcm")
    # The first pass refuses it (budget); a second ingest of the same bytes is unaffected.
    assert ingest_paths([path], IngestOptions(max_decoded_bytes=10)).n_images == 0
    result = ingest_paths([path, path])
    assert result.n_images == 1 and len(result.rejected) == 1 and "given twice" in result.rejected[0].reason


def test_a_failing_sink_is_the_callers_error_not_a_bad_file(tmp_path: Path) -> None:
    path = write_dataset(make_us_dataset(phantom()), tmp_path / "a.dcm")
    png = tmp_path / "b.png"
    cv2.imwrite(str(png), phantom(seed=2))

    def full_disk(image: IngestedImage) -> IngestedImage:
        raise OSError(28, "No space left on device")

    for target in (path, png):
        with pytest.raises(OSError, match="No space left"):
            ingest_paths([target], sink=full_disk)
