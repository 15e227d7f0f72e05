"""Keyed, deterministic pseudonyms: the same input gives the same output on every node sharing the key.

HMAC-SHA256 makes the mappings stable across associations, restarts and processes without a shared
table, and irreversible without the key (PS3.15 E.3.9 notes hashing UIDs is acceptable only keyed).

A lookup of pre-assigned subjects (original PatientID -> subject ID and name, imported by the privacy
officer) takes precedence over the keyed default for the patients it lists; the node loads it from its
storage and passes it in, so this module stays a pure function of its inputs.
"""
from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import NamedTuple


class Subject(NamedTuple):
    """A pre-assigned pseudonymous patient: the ID and name that replace the original's."""

    id: str
    name: str


class SubjectLookup:
    """Original PatientID -> pre-assigned :class:`Subject`; ``replace`` swaps the whole table at once, so
    a node that reloads it while workers run never shows them half a table."""

    def __init__(self, subjects: Mapping[str, Subject] | None = None) -> None:
        self.replace(subjects or {})

    def replace(self, subjects: Mapping[str, Subject]) -> None:
        self._tables = (dict(subjects), {s.id: s.name for s in subjects.values()})

    def get(self, original_patient_id: str) -> Subject | None:
        return self._tables[0].get(original_patient_id)

    def name_of(self, subject_id: str) -> str | None:
        return self._tables[1].get(subject_id)

    def __len__(self) -> int:
        return len(self._tables[0])


class Pseudonymizer:
    def __init__(self, key: bytes, uid_root: str = "2.25", lookup: SubjectLookup | None = None) -> None:
        self._key = key
        self._uid_root = uid_root
        self.lookup = lookup if lookup is not None else SubjectLookup()

    def _digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """Replacement for a UID (U action); the same original always maps to the same UID."""
        return self._as_uid(self._digest("uid", original.strip("\x00 ")))

    def derived_uid(self, original: str) -> str:
        """UID of the masked image derived from the instance ``original`` (distinct from ``uid``)."""
        return self._as_uid(self._digest("derived", original.strip("\x00 ")))

    def _as_uid(self, digest: bytes) -> str:
        # 2.25 root: a UUID-derived decimal (PS3.5 B.2); 120 bits keeps any root of <= 24 chars under 64.
        value = int.from_bytes(digest[:15], "big")
        return f"{self._uid_root}.{value}"

    def patient_id(self, patient_id: str, issuer: str = "") -> str:
        """Stable pseudonymous Patient ID (LO): the lookup's subject ID if it lists ``patient_id``, else
        keyed, e.g. ``DM-3F9A1C0B7E22D410``."""
        subject = self.lookup.get(patient_id.strip()) if patient_id.strip() else None
        if subject is not None:
            return subject.id
        return "DM-" + self._digest("patient", f"{issuer}|{patient_id}").hex()[:16].upper()

    def patient_name(self, pseudo_id: str) -> str:
        """The lookup's subject name for a pre-assigned ID that has one, else ``ANONYMOUS^<pseudo_id>``."""
        return self.lookup.name_of(pseudo_id) or f"ANONYMOUS^{pseudo_id}"

    def date_shift_days(self, patient_key: str, max_days: int) -> int:
        """Per-patient backward shift in days (1..max_days): intervals within a patient are kept."""
        return 1 + int.from_bytes(self._digest("dateshift", patient_key)[:8], "big") % max_days
