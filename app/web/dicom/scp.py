"""The C-STORE listener: a DICOM peer that modalities and the PACS send studies to.

It accepts Ultrasound (single and multi-frame) and Secondary Capture storage, plus Verification
(C-ECHO), in every transfer syntax ingestion decodes (``decodable_transfer_syntaxes``). Each
instance is stored through the upload path before it is acknowledged; a bad instance gets a
failure status with a readable ErrorComment and costs nothing else. Associations from a calling
AE title (and host) that is not on the allow-list are rejected ("calling AE title not recognised").
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from pydicom.dataset import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    Verification,
)
from pynetdicom.transport import ThreadedAssociationServer

from app.ingest.dicom import decodable_transfer_syntaxes
from app.web.dicom.allowlist import AllowEntry, is_allowed
from app.web.dicom.settle import StudySettler
from app.web.runtime import Runtime
from app.web.services.dicom_intake import (
    InstanceRefused,
    queue_received_studies,
    store_instance,
    studies_never_queued,
)

log = logging.getLogger(__name__)

# The retired US SOP classes (1993 drafts) are still sent by old machines; ingestion reads them.
_RETIRED_US_IMAGE = "1.2.840.10008.5.1.4.1.1.6"
_RETIRED_US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3"
STORAGE_SOP_CLASSES: tuple[str, ...] = (
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    _RETIRED_US_IMAGE,
    _RETIRED_US_MULTIFRAME,
    SecondaryCaptureImageStorage,
    MultiFrameGrayscaleByteSecondaryCaptureImageStorage,
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    MultiFrameTrueColorSecondaryCaptureImageStorage,
)

# C-STORE statuses (PS3.4 B.2.3).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000
# PS3.8 A-ASSOCIATE-RJ: rejected permanent, by the service user, calling AE title not recognised.
_REJECT_PERMANENT, _SOURCE_USER, _CALLING_AE_NOT_RECOGNISED = 0x01, 0x01, 0x03
_ERROR_COMMENT_MAX = 64  # LO


def _failure(status: int, comment: str) -> Dataset:
    answer = Dataset()
    answer.Status = status
    answer.ErrorComment = comment[:_ERROR_COMMENT_MAX]
    return answer


class DicomListener:
    """One listening AE over the runtime's database, store and (when present) worker."""

    def __init__(
        self, runtime: Runtime, host: str, port: int, ae_title: str, allow: list[AllowEntry]
    ) -> None:
        self.runtime = runtime
        self.host = host
        self.port = port
        self.ae_title = ae_title
        self.allow = allow
        self.settler = StudySettler(runtime.settings.dicom_quiet_s, self._settled)
        self._server: ThreadedAssociationServer | None = None
        self._lock = threading.Lock()
        # Counts only (never patient data), for the log and the tests.
        self.stats = {"stored": 0, "refused": 0, "failed": 0, "rejected_associations": 0}

    def _application_entity(self) -> AE:
        ae = AE(ae_title=self.ae_title)
        syntaxes = [str(s) for s in decodable_transfer_syntaxes()]
        for sop_class in STORAGE_SOP_CLASSES:
            ae.add_supported_context(sop_class, syntaxes)
        ae.add_supported_context(Verification)
        # A sender addressing another AE title is misconfigured: say so rather than store under it.
        ae.require_called_aet = True
        return ae

    def start(self) -> None:
        """Listen (non-blocking) and queue the studies a stopped listener never queued."""
        ae = self._application_entity()
        handlers = [
            (evt.EVT_REQUESTED, self._on_requested),
            (evt.EVT_C_STORE, self._on_store),
            (evt.EVT_RELEASED, self._on_ended),
            (evt.EVT_ABORTED, self._on_ended),
        ]
        self._server = ae.start_server((self.host, self.port), block=False, evt_handlers=handlers)
        self.port = self._server.server_address[1]
        self.settler.start()
        leftover = studies_never_queued(self.runtime)
        if leftover:
            queue_received_studies(self.runtime, leftover, "dicom", recovered=True)
        log.info(
            "DICOM listener %s on %s:%d; %d allowed calling AE titles",
            self.ae_title,
            self.host,
            self.port,
            len(self.allow),
        )
        if not self.allow:
            log.warning("the DICOM allow-list is empty: every association will be refused")

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
        self.settler.stop()

    # ---- events (each runs in the association's own thread) ------------------------------
    def _on_requested(self, event: Any) -> None:
        requestor = event.assoc.requestor
        # At this point only the request primitive holds the calling AE title (the requestor's
        # ae_title is filled in by the negotiation that follows).
        calling = str(requestor.primitive.calling_ae_title or "")
        if not is_allowed(self.allow, calling, requestor.address):
            with self._lock:
                self.stats["rejected_associations"] += 1
            log.warning("refused an association from calling AE %r at %s", calling.strip(), requestor.address)
            event.assoc.acse.send_reject(_REJECT_PERMANENT, _SOURCE_USER, _CALLING_AE_NOT_RECOGNISED)
            # As pynetdicom does after its own rejections: wait for the A-ASSOCIATE-RJ to leave
            # before the socket is closed (else the peer sees an abort, not the reason).
            event.assoc.kill()

    def _on_store(self, event: Any) -> Dataset | int:
        calling_ae = event.assoc.requestor.ae_title
        try:
            data = event.encoded_dataset(include_meta=True)
            uid = str(event.request.AffectedSOPInstanceUID or "") or None
            stored = store_instance(self.runtime, data, uid, via="dicom", audit={"calling_ae": calling_ae})
        except InstanceRefused as exc:
            self._count("refused")
            return _failure(CANNOT_UNDERSTAND, exc.reason)
        except Exception as exc:
            # Storage full, database down...: the sender may retry later. The exception's
            # message may quote SQL values (patient data): only its type is logged.
            self._count("failed")
            log.error("storing a received instance failed (%s)", type(exc).__name__)
            return _failure(OUT_OF_RESOURCES, "the instance could not be stored; try again later")
        self._count("stored")
        self.settler.received(id(event.assoc), stored.study_ids)
        return SUCCESS

    def _on_ended(self, event: Any) -> None:
        self.settler.association_ended(id(event.assoc))

    def _settled(self, study_ids: set[int]) -> None:
        queue_received_studies(self.runtime, study_ids, "dicom")

    def _count(self, key: str) -> None:
        with self._lock:
            self.stats[key] += 1
