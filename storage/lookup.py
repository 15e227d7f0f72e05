"""The pseudonym map: pre-assigned subject IDs imported from a lookup CSV, and the patients and studies
the node has seen, for the privacy officer.

Originals are kept only encrypted (Fernet, with a key derived from the de-identification key by HKDF)
and found by a keyed hash, so the database holds no PHI in the clear; a database copy without the key
file reveals nothing. The export is encrypted again, with a key of the privacy officer's own.
"""
from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import io
import re
from base64 import urlsafe_b64encode
from dataclasses import dataclass

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from digimask.storage.models import PseudonymEntry, utcnow
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

CSV_COLUMNS = ("original_patient_id", "subject_id", "subject_name")
EXPORT_COLUMNS = ("kind", "original", "pseudonym", "subject_name", "patient_pseudonym", "source")
_LO = re.compile(r"^[^\\\x00-\x1f]{1,64}$")  # a Patient ID / Name value: no backslash or control characters


class LookupImportError(ValueError):
    """An import file was refused; ``problems`` name lines and columns, never the values (PHI)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class MapRow:
    kind: str  # "patient" | "study"
    original: str
    pseudonym: str
    subject_name: str | None
    patient_pseudonym: str | None
    source: str  # "lookup" | "seen"


@dataclass(frozen=True)
class Imported:
    added: int
    updated: int
    previously_seen: int  # patients already seen under another pseudonym: their earlier studies keep it


class PseudonymMap:
    def __init__(self, sessions: sessionmaker, deid_key: bytes) -> None:
        self.sessions = sessions
        derived = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=b"digimask pseudonym map").derive(deid_key)
        self._index_key, self._fernet = derived[:32], Fernet(urlsafe_b64encode(derived[32:]))

    def _index(self, kind: str, original: str) -> str:
        return hmac.new(self._index_key, f"{kind}\x00{original}".encode(), hashlib.sha256).hexdigest()

    # -- the lookup of pre-assigned subjects --------------------------------------------------------
    def import_csv(self, text: str) -> Imported:
        """Add or replace pre-assigned subjects from CSV (header ``original_patient_id,subject_id[,subject_name]``).
        All or nothing: a file with any problem changes nothing."""
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
        fields = [f.strip() for f in reader.fieldnames or []]
        if fields[:2] != list(CSV_COLUMNS[:2]):
            raise LookupImportError([f"line 1: the header must start with {','.join(CSV_COLUMNS[:2])} (optional third column subject_name)"])
        rows: dict[str, tuple[str, str]] = {}
        problems: list[str] = []
        ids: dict[str, int] = {}
        for n, rec in enumerate(reader, start=2):
            vals = {k.strip(): (v or "").strip() for k, v in rec.items() if k is not None}
            original, subject, name = vals.get(CSV_COLUMNS[0], ""), vals.get(CSV_COLUMNS[1], ""), vals.get(CSV_COLUMNS[2], "")
            for col, value, required in ((CSV_COLUMNS[0], original, True), (CSV_COLUMNS[1], subject, True), (CSV_COLUMNS[2], name, False)):
                if (value or required) and not _LO.match(value):
                    problems.append(f"line {n}: {col} is {'empty' if not value else 'not a valid DICOM value (1-64 characters, no backslash)'}")
            if original in rows:
                problems.append(f"line {n}: the same original_patient_id as an earlier line")
            if subject in ids:
                problems.append(f"line {n}: subject_id also given on line {ids[subject]} (two patients would merge)")
            ids.setdefault(subject, n)
            rows[original] = (subject, name)
        if not rows and not problems:
            problems.append("no rows")
        with self.sessions.begin() as s:
            existing = {e.index_hash: e for e in s.scalars(select(PseudonymEntry).where(PseudonymEntry.kind == "patient")).all()}
            by_hash = {self._index("patient", o): (o, subj) for o, subj in rows.items()}
            for e in existing.values():
                if e.index_hash not in by_hash and e.pseudonym in ids and e.source == "lookup":
                    problems.append(f"line {ids[e.pseudonym]}: subject_id already assigned to another patient")
            if problems:
                raise LookupImportError(problems)
            added = updated = seen = 0
            for h, (original, subj) in by_hash.items():
                row = existing.get(h)
                if row is None:
                    s.add(PseudonymEntry(kind="patient", index_hash=h, original_enc=self._fernet.encrypt(original.encode()).decode(),
                                         pseudonym=subj[0], subject_name=subj[1] or None, source="lookup"))
                    added += 1
                    continue
                if row.source == "seen" and row.pseudonym != subj[0]:
                    seen += 1
                row.pseudonym, row.subject_name, row.source, row.updated_at = subj[0], subj[1] or None, "lookup", utcnow()
                updated += 1
        return Imported(added, updated, seen)

    def subjects(self) -> dict[str, tuple[str, str]]:
        """The imported lookup, decrypted (original PatientID -> subject ID, name): what the
        de-identification uses before its keyed default."""
        with self.sessions() as s:
            rows = s.execute(select(PseudonymEntry.original_enc, PseudonymEntry.pseudonym, PseudonymEntry.subject_name)
                             .where(PseudonymEntry.kind == "patient", PseudonymEntry.source == "lookup")).all()
        return {self._fernet.decrypt(enc.encode()).decode(): (p, n or "") for enc, p, n in rows}

    def stamp(self) -> tuple[int, dt.datetime | None]:
        """Changes whenever the imported lookup does (a cheap query to decide whether to reload it)."""
        with self.sessions() as s:
            n, last = s.execute(select(func.count(), func.max(PseudonymEntry.updated_at))
                                .where(PseudonymEntry.source == "lookup")).one()
        return int(n), last

    # -- what the node saw --------------------------------------------------------------------------
    def record_seen(self, kind: str, original: str, pseudonym: str, patient_pseudonym: str | None = None) -> bool:
        """Remember ``original`` -> ``pseudonym`` if not yet known; True if a row was added."""
        if not original:
            return False
        h = self._index(kind, original)
        with self.sessions() as s:
            if s.scalar(select(PseudonymEntry.id).where(PseudonymEntry.kind == kind, PseudonymEntry.index_hash == h)):
                return False
            s.add(PseudonymEntry(kind=kind, index_hash=h, original_enc=self._fernet.encrypt(original.encode()).decode(),
                                 pseudonym=pseudonym, patient_pseudonym=patient_pseudonym, source="seen"))
            try:
                s.commit()
            except IntegrityError:  # another worker recorded it at the same moment
                s.rollback()
                return False
        return True

    # -- for the privacy officer --------------------------------------------------------------------
    def rows(self, pseudonym: str | None = None) -> list[MapRow]:
        """Every entry decrypted (or those with ``pseudonym``, as patient or study pseudonym)."""
        with self.sessions() as s:
            q = select(PseudonymEntry).order_by(PseudonymEntry.kind, PseudonymEntry.id)
            if pseudonym is not None:
                q = q.where(PseudonymEntry.pseudonym == pseudonym)
            found = s.scalars(q).all()
        return [MapRow(e.kind, self._fernet.decrypt(e.original_enc.encode()).decode(), e.pseudonym, e.subject_name,
                       e.patient_pseudonym, e.source) for e in found]

    def counts(self) -> dict[str, int]:
        with self.sessions() as s:
            return {f"{k}:{src}": n for k, src, n in s.execute(
                select(PseudonymEntry.kind, PseudonymEntry.source, func.count())
                .group_by(PseudonymEntry.kind, PseudonymEntry.source)).all()}

    def export(self, export_key: bytes) -> bytes:
        """The whole map as CSV, encrypted with the privacy officer's Fernet key (``new_export_key``)."""
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(EXPORT_COLUMNS)
        for r in self.rows():
            w.writerow([r.kind, r.original, r.pseudonym, r.subject_name or "", r.patient_pseudonym or "", r.source])
        return Fernet(export_key).encrypt(buf.getvalue().encode())


def new_export_key() -> bytes:
    return Fernet.generate_key()


def decrypt_export(data: bytes, export_key: bytes) -> str:
    """The CSV of an export; raises ``cryptography.fernet.InvalidToken`` with a wrong key or altered file."""
    return Fernet(export_key).decrypt(data).decode()
