"""The node's side of the pseudonym map: keeps the workers' lookup of pre-assigned subjects in step with
the stored one, and records each patient and study the pipeline pseudonymised (for the privacy officer)."""
from __future__ import annotations

import logging

from digimask.pipeline.deid.pseudonym import Subject, SubjectLookup
from digimask.pipeline.process import Processed
from digimask.storage.lookup import PseudonymMap
from digimask.storage.store import Store
from pydicom.dataset import Dataset

log = logging.getLogger(__name__)


class LookupSync:
    def __init__(self, store: Store, deid_key: bytes) -> None:
        self.map = PseudonymMap(store.sessions, deid_key)
        self.lookup = SubjectLookup()
        self._stamp: object = None
        self._recorded: set[tuple[str, str]] = set()

    def refresh(self) -> None:
        """Reload the lookup if it changed since the last call (one small query)."""
        stamp = self.map.stamp()
        if stamp != self._stamp:
            self.lookup.replace({k: Subject(*v) for k, v in self.map.subjects().items()})
            self._stamp = stamp
            log.info("pseudonym lookup loaded: %d pre-assigned subject(s)", len(self.lookup))

    def seen(self, original: Dataset, done: Processed) -> None:
        """Record original -> pseudonym for the patient and the study of one processed instance."""
        patient = str(original.get("PatientID", "")).strip()
        pairs = [("patient", patient, done.pseudo_patient_id, None),
                 ("study", str(original.get("StudyInstanceUID", "")), str(done.dataset.get("StudyInstanceUID", "")),
                  done.pseudo_patient_id)]
        for kind, value, pseudonym, parent in pairs:
            if value and (kind, pseudonym) not in self._recorded:
                self.map.record_seen(kind, value, pseudonym, parent)
                self._recorded.add((kind, pseudonym))
