"""One DICOM study per synthetic patient (US Image Storage plus one US Multi-frame cine).

Where things are, for readers of these files (e.g. app/ingest):
  - Gestational age: AcquisitionContextSequence (0040,0555), one item with
    ValueType "NUMERIC", ConceptNameCodeSequence (LN 11884-4 "Gestational age Estimated"),
    NumericValue in weeks and MeasurementUnitsCodeSequence (UCUM "wk").
  - Field of view: SequenceOfUltrasoundRegions (0018,6011), one 2D tissue region whose
    RegionLocationMinX0/MinY0/MaxX1/MaxY1 (inclusive) bound the sector, PhysicalDeltaX/Y in cm
    per pixel, and the reference pixel at the probe's virtual apex (above the image, so Y0 < 0).
  - ImageComments says the image is synthetic. Nothing in the files is private.
  - Series 1 holds the single-frame images in manifest order; series 2 holds the cine loop.
  - Series 3 (written only when asked for) holds non-CNS planes (abdomen, femur, heart,
    face) of the same study, in their own folder; SeriesDescription says they are not CNS.
Every identifier, date and UID derives from the seed, so equal seeds give identical bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from app.synth.geometry import Sector, sector_maps
from app.synth.pngio import SYNTHETIC_NOTICE
from app.synth.scene import cine_views, render_view

if TYPE_CHECKING:
    from app.synth.dataset import PatientImages

US_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME_STORAGE = "1.2.840.10008.5.1.4.1.1.3.1"
GESTATIONAL_AGE_CODE = ("11884-4", "LN", "Gestational age Estimated")
CINE_FRAMES = (8, 16)
FRAME_TIME_MS = 40.0
TRANSDUCER_FREQUENCY_KHZ = 3500


def _uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=["fetalcns-synth", *(str(p) for p in parts)])


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def gestational_age_context(weeks: float) -> Sequence:
    item = Dataset()
    item.ValueType = "NUMERIC"
    item.ConceptNameCodeSequence = Sequence([_code(*GESTATIONAL_AGE_CODE)])
    item.NumericValue = f"{weeks:.1f}"
    item.MeasurementUnitsCodeSequence = Sequence([_code("wk", "UCUM", "week")])
    return Sequence([item])


def ultrasound_regions(sector: Sector, depth_mm: float) -> Sequence:
    top, bottom, left, right = sector_maps(sector).box
    cm_per_px = depth_mm / 10.0 / (sector.r_max - sector.r_min)
    region = Dataset()
    region.RegionSpatialFormat = 1  # 2D
    region.RegionDataType = 1  # tissue
    region.RegionFlags = 0
    region.RegionLocationMinX0 = left
    region.RegionLocationMinY0 = top
    region.RegionLocationMaxX1 = right - 1
    region.RegionLocationMaxY1 = bottom - 1
    region.ReferencePixelX0 = round(sector.apex_x)
    region.ReferencePixelY0 = round(sector.apex_y)
    region.PhysicalUnitsXDirection = 3  # cm
    region.PhysicalUnitsYDirection = 3
    region.ReferencePixelPhysicalValueX = 0.0
    region.ReferencePixelPhysicalValueY = 0.0
    region.PhysicalDeltaX = cm_per_px
    region.PhysicalDeltaY = cm_per_px
    region.TransducerFrequency = TRANSDUCER_FREQUENCY_KHZ
    return Sequence([region])


def _base(rendered: PatientImages, sop_class: str, sop_uid: str, series: int) -> Dataset:
    patient = rendered.patient
    study_uid = _uid(patient.seed, patient.patient_id, "study")
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = f"SYNTHETIC^PHANTOM {patient.index + 1:05d}"
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = "F"
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = f"{patient.study_date:%Y%m%d}"
    ds.StudyTime = patient.study_time
    ds.StudyID = "1"
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = "Synthetic fetal neurosonography"
    ds.Modality = "US"
    ds.SeriesInstanceUID = _uid(patient.seed, patient.patient_id, "series", series)
    ds.SeriesNumber = series
    ds.SeriesDescription = "Synthetic cine" if series == 2 else "Synthetic stills"
    # General Series Laterality is Type 2C: dciodvfy asks for it without ImageLaterality. The fetal
    # head and spine are not paired structures, so it is present and empty.
    ds.Laterality = ""
    ds.SeriesDate = ds.StudyDate
    ds.ContentDate = ds.StudyDate
    ds.ContentTime = patient.study_time
    ds.Manufacturer = "fetalcns synth"
    # The site (app/synth/sites.py) travels with the file, as a real scanner's model name does;
    # the default site keeps the original value so that its files are unchanged.
    site = patient.site
    ds.ManufacturerModelName = "phantom" if site.name == "default" else f"phantom site {site.name}"
    if site.name != "default":
        ds.TransducerData = [site.probe_label, f"{site.frequency_mhz:.1f}MHz", site.probe]
    ds.BodyPartExamined = "FETUS"
    ds.PatientOrientation = ""
    ds.ImageType = ["DERIVED", "PRIMARY"]
    ds.BurnedInAnnotation = "YES"
    ds.LossyImageCompression = "00"
    ds.ImageComments = SYNTHETIC_NOTICE
    ds.AcquisitionContextSequence = gestational_age_context(patient.anatomy.gestational_age_weeks)
    return ds


def _set_pixels(ds: Dataset, frames: np.ndarray, rgb: bool) -> None:
    """`frames`: uint8 [N, H, W] grey or [N, H, W, 3] colour (tinted sites: always RGB).

    Grey RGB files repeat the grey level in each channel.
    """
    if frames.ndim == 4 or rgb:
        if frames.ndim == 3:
            frames = np.repeat(frames[..., None], 3, axis=-1)
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
    else:
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = frames.shape[1], frames.shape[2]
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = np.ascontiguousarray(frames).tobytes()


def write_study(folder: Path, rendered: PatientImages) -> list[Path]:
    """Write the patient's stills and one cine loop; returns the stills' paths in image order."""
    patient = rendered.patient
    folder.mkdir(parents=True, exist_ok=True)
    stills: list[Path] = []
    for number, image in enumerate(rendered.images, start=1):
        sop_uid = _uid(patient.seed, patient.patient_id, "still", number)
        ds = _base(rendered, US_IMAGE_STORAGE, sop_uid, series=1)
        ds.InstanceNumber = number
        ds.SequenceOfUltrasoundRegions = ultrasound_regions(image.sector, image.view.depth_mm)
        _set_pixels(ds, image.pixels[None], rgb=number % 2 == 0)
        path = folder / f"IM{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        stills.append(path)
    _write_cine(folder / "CINE0001.dcm", rendered)
    return stills


OTHER_VIEWS_SERIES = 3


def write_other_views(folder: Path, rendered: PatientImages) -> list[Path]:
    """Write the patient's non-CNS planes as series 3 of their study; returns the paths in order."""
    patient = rendered.patient
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for number, (image, plane) in enumerate(zip(rendered.images, rendered.planes, strict=True), start=1):
        sop_uid = _uid(patient.seed, patient.patient_id, "other", number)
        ds = _base(rendered, US_IMAGE_STORAGE, sop_uid, series=OTHER_VIEWS_SERIES)
        ds.SeriesDescription = "Synthetic other views (not CNS)"
        ds.ImageComments = f"{SYNTHETIC_NOTICE}; {plane} view, outside the CNS scope"
        ds.InstanceNumber = number
        ds.SequenceOfUltrasoundRegions = ultrasound_regions(image.sector, image.view.depth_mm)
        _set_pixels(ds, image.pixels[None], rgb=number % 2 == 0)
        path = folder / f"IM{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def _write_cine(path: Path, rendered: PatientImages) -> None:
    patient = rendered.patient
    rng = np.random.default_rng([patient.seed, patient.index, 2])
    count = int(rng.integers(CINE_FRAMES[0], CINE_FRAMES[1] + 1))
    first = rendered.images[0]
    stamp = f"{patient.study_date:%Y-%m-%d} {patient.study_time[:2]}:{patient.study_time[2:4]}"
    frames = np.stack(
        [
            render_view(view, patient.anatomy, rng, ("FETALCNS  OB  CINE", stamp)).pixels
            for view in cine_views(first.view, count, rng)
        ]
    )
    ds = _base(rendered, US_MULTIFRAME_STORAGE, _uid(patient.seed, patient.patient_id, "cine"), series=2)
    ds.InstanceNumber = 1
    ds.NumberOfFrames = count
    ds.FrameTime = FRAME_TIME_MS
    ds.FrameIncrementPointer = 0x00181063  # FrameTime
    ds.CineRate = round(1000 / FRAME_TIME_MS)
    ds.RecommendedDisplayFrameRate = round(1000 / FRAME_TIME_MS)
    ds.SequenceOfUltrasoundRegions = ultrasound_regions(first.sector, first.view.depth_mm)
    _set_pixels(ds, frames, rgb=True)
    ds.save_as(path, enforce_file_format=True)
