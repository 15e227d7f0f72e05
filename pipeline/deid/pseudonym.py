"""Keyed, deterministic pseudonyms: the same input gives the same output on every node sharing the key.

HMAC-SHA256 makes the mappings stable across associations, restarts and processes without a shared
table, and irreversible without the key (PS3.15 E.3.9 notes hashing UIDs is acceptable only keyed).
"""
from __future__ import annotations

import hashlib
import hmac


class Pseudonymizer:
    def __init__(self, key: bytes, uid_root: str = "2.25") -> None:
        self._key = key
        self._uid_root = uid_root

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
        """Stable pseudonymous Patient ID (LO), e.g. ``DM-3F9A1C0B7E22D410``."""
        return "DM-" + self._digest("patient", f"{issuer}|{patient_id}").hex()[:16].upper()

    def patient_name(self, pseudo_id: str) -> str:
        return f"ANONYMOUS^{pseudo_id}"

    def date_shift_days(self, patient_key: str, max_days: int) -> int:
        """Per-patient backward shift in days (1..max_days): intervals within a patient are kept."""
        return 1 + int.from_bytes(self._digest("dateshift", patient_key)[:8], "big") % max_days
