"""Export de-identification: the DICOM PS3.15 Basic Application Level Confidentiality Profile
(Annex E, Table E.1-1), applied to a copy of an instance on its way out.

What it does, element by element (recursively, inside sequences too):
- person names, dates, times and the identifying IDs and free texts of Table E.1-1 are emptied
  (Type 2 attributes stay present) or removed;
- every UID that is not a DICOM-defined one (1.2.840.10008.…) is replaced by a 2.25 UID derived
  from it with a secret, so references between exported instances still match;
- PatientID and PatientName become one pseudonym derived with the same secret (the same patient
  gets the same pseudonym in every export);
- private elements are removed;
- PatientIdentityRemoved YES and the profile's code are recorded.

Not done: the Clean Pixel Data Option (text burned into ultrasound pixels stays; BurnedInAnnotation
tells the receiver), and structured content: the SR's free text and the PDF cannot be cleaned by
this profile, so a de-identified export leaves them out (``can_deidentify``).
"""

from __future__ import annotations

import hashlib
import hmac
import io

import pydicom
from pydicom.dataset import Dataset

DICOM_UID_ROOT = "1.2.840.10008."
# Table E.1-1 attributes removed (X) or emptied (Z) beyond every PN, DA, DT and TM value.
REMOVED = frozenset(
    {
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "OperatorsName",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansOfRecord",
        "RequestingPhysician",
        "OtherPatientIDs",
        "OtherPatientNames",
        "OtherPatientIDsSequence",
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "MedicalRecordLocator",
        "EthnicGroup",
        "Occupation",
        "AdditionalPatientHistory",
        "PatientComments",
        "ImageComments",
        "StudyDescription",
        "SeriesDescription",
        "DerivationDescription",
        "DeviceSerialNumber",
        "IssuerOfPatientID",
        "PatientBirthTime",
        "ReferencedPatientSequence",
        "ReferencedStudySequence",
        "RequestAttributesSequence",
        "AdmittingDiagnosesDescription",
        "PerformedProcedureStepID",
        "PerformedProcedureStepDescription",
        "RequestedProcedureDescription",
        "ProtocolName",
        "AcquisitionContextSequence",
        "ContentSequence",
        "PatientState",
        "PregnancyStatus",
        "CountryOfResidence",
        "RegionOfResidence",
        "MilitaryRank",
        "BranchOfService",
        "PatientMotherBirthName",
        "PatientBirthName",
        "ResponsiblePerson",
        "ResponsibleOrganization",
        "ScheduledProcedureStepID",
        "RequestedProcedureID",
        "FillerOrderNumberImagingServiceRequest",
        "PlacerOrderNumberImagingServiceRequest",
        "ReasonForTheRequestedProcedure",
        "TextValue",
        "InstitutionCodeSequence",
        "StationAETitle",
        "ManufacturerModelName",
    }
)
EMPTIED = frozenset({"AccessionNumber", "StudyID", "PatientBirthDate", "PatientSex"})
_DATE_TIME_NAME_VRS = frozenset({"PN", "DA", "DT", "TM"})
# DICOM-defined UIDs and these UID attributes are kept as they are (classes, syntaxes, codes).
_KEPT_UIDS = frozenset(
    {"SOPClassUID", "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID"}
)


class Deidentifier:
    """One export's de-identification; ``secret`` makes the pseudonyms and new UIDs unguessable."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode("utf-8")

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{kind}\x1f{value}".encode(), hashlib.sha256).digest()

    def new_uid(self, uid: str) -> str:
        return "2.25." + str(int.from_bytes(self._digest("uid", uid)[:16], "big"))

    def pseudonym(self, patient_id: str) -> str:
        return "ANON-" + self._digest("patient", patient_id).hex()[:12].upper()

    def apply(self, data: bytes) -> bytes:
        ds = pydicom.dcmread(io.BytesIO(data))
        patient = self.pseudonym(
            str(ds.get("PatientID", "") or "") + "\x1f" + str(ds.get("PatientName", "") or "")
        )
        ds.remove_private_tags()
        self._clean(ds)
        ds.PatientID = patient
        ds.PatientName = patient
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "PS3.15 Basic Application Confidentiality Profile"  # LO: 64 chars
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = [code]
        meta = ds.file_meta
        meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()

    def _clean(self, ds: Dataset) -> None:
        for element in list(ds):
            keyword = element.keyword
            if keyword in REMOVED:
                del ds[element.tag]
            elif element.VR == "SQ":
                for item in element.value:
                    self._clean(item)
            elif keyword in EMPTIED or element.VR in _DATE_TIME_NAME_VRS:
                element.value = ""
            elif element.VR == "UI" and keyword not in _KEPT_UIDS and element.value:
                values = element.value if element.VM > 1 else [element.value]
                new = [v if str(v).startswith(DICOM_UID_ROOT) else self.new_uid(str(v)) for v in values]
                element.value = new if element.VM > 1 else new[0]


def can_deidentify(sop_class_uid: str) -> bool:
    """Images (originals, SC heatmaps) can; structured reports and encapsulated documents cannot."""
    return not sop_class_uid.startswith(("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.104."))
