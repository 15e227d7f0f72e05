"""The de-identification profile: PS3.15 Table E.1-1, with the administrator's options applied.

The table is generated data (``pipeline/deid/standard/annex_e.json``, see ``scripts/gen_standard_tables.py``);
this module only decides, per attribute, which action code applies:
``D`` dummy, ``Z`` zero-length or dummy, ``X`` remove, ``K`` keep, ``C`` clean, ``U`` replace UID,
or a compound (``X/Z``, ``X/D``, ``Z/D``, ``X/Z/D``, ``X/Z/U*``) that the IOD's attribute Type resolves,
and, for what the table does not name, whether the keep-list (``standard/keep.json``) keeps it.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

from digimask.config.settings import DeidOption

# CID 7050 codes (DCM) written to DeidentificationMethodCodeSequence.
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")
CLEAN_PIXEL_DATA_CODE = ("113101", "Clean Pixel Data Option")
CLEAN_VISUAL_FEATURES_CODE = ("113102", "Clean Recognizable Visual Features Option")
OPTION_CODES: dict[DeidOption, tuple[str, str]] = {
    DeidOption.clean_descriptors: ("113105", "Clean Descriptors Option"),
    DeidOption.retain_longitudinal_full_dates: ("113106", "Retain Longitudinal Temporal Information Full Dates Option"),
    DeidOption.retain_longitudinal_modified_dates: ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    DeidOption.retain_patient_characteristics: ("113108", "Retain Patient Characteristics Option"),
    DeidOption.retain_device_identity: ("113109", "Retain Device Identity Option"),
    DeidOption.retain_safe_private: ("113111", "Retain Safe Private Option"),
    DeidOption.retain_institution_identity: ("113112", "Retain Institution Identity Option"),
}


@dataclass(frozen=True)
class _Masked:
    mask: int
    value: int
    action: str


@cache
def _table() -> list[dict]:
    return json.loads(resources.files("digimask.pipeline.deid").joinpath("standard/annex_e.json").read_text())


@cache
def _keep_list() -> tuple[frozenset[int], dict[int, frozenset[int]]]:
    raw = json.loads(resources.files("digimask.pipeline.deid").joinpath("standard/keep.json").read_text())
    return (frozenset(int(t, 16) for t in raw["top"]),
            {int(sq, 16): frozenset(int(t, 16) for t in items) for sq, items in raw["in_sequence"].items()})


@cache
def iod_types(sop_class_uid: str) -> dict[int, str]:
    """Top-level attribute Types (``1``, ``1C``, ``2``, ``2C``, ``3``) of a supported IOD, by tag."""
    raw = json.loads(resources.files("digimask.pipeline.deid").joinpath("standard/iod_types.json").read_text())
    return {int(tag, 16): t for tag, t in raw.get(sop_class_uid, {}).items() if "X" not in tag.upper()}


@cache
def iod_required(sop_class_uid: str) -> dict[int, str]:
    """Type 1 and Type 2 attributes of a supported IOD's mandatory modules, by tag (empty: no table)."""
    raw = json.loads(resources.files("digimask.pipeline.deid").joinpath("standard/iod_required.json").read_text())
    return {int(tag, 16): t for tag, t in raw.get(sop_class_uid, {}).items() if "X" not in tag.upper()}


def _pattern(tag: str) -> tuple[int, int]:
    """``'60XX3000'`` -> (mask, value) matching groups 6000-60FF."""
    mask = int("".join("0" if c in "xX" else "F" for c in tag), 16)
    return mask, int(tag.upper().replace("X", "0"), 16)


class Profile:
    """Resolved actions for one set of options."""

    def __init__(self, options: Iterable[DeidOption] = (), keep_attributes: Iterable[int] = ()) -> None:
        self.options = frozenset(options)
        self._keep_top, self._keep_in = _keep_list()
        self._keep_anywhere = frozenset(keep_attributes)  # the administrator's additions
        enabled = {o.value for o in self.options}
        self._exact: dict[int, str] = {}
        self._masked: list[_Masked] = []
        for row in _table():
            chosen = [a for opt, a in row["options"].items() if opt in enabled]
            # A retain (K) wins over a clean (C) when two enabled options name the same attribute.
            action = "K" if "K" in chosen else (chosen[0] if chosen else row["basic"])
            tag = row["tag"]
            if len(tag) != 8:  # the odd-group private row: handled by retain_safe_private
                continue
            if any(c in "xX" for c in tag):
                self._masked.append(_Masked(*_pattern(tag), action))
            else:
                self._exact[int(tag, 16)] = action

    @property
    def codes(self) -> list[tuple[str, str]]:
        """CID 7050 codes for the header profile and options (pixel codes are added by the encoder)."""
        return [BASIC_PROFILE_CODE] + [OPTION_CODES[o] for o in sorted(self.options, key=lambda o: o.value)]

    def action(self, tag: int) -> str | None:
        """The table's action for ``tag``; ``None`` when the table does not list it (see :meth:`keeps`)."""
        found = self._exact.get(tag)
        if found is not None:
            return found
        for m in self._masked:
            if tag & m.mask == m.value:
                return m.action
        return None

    def keeps(self, tag: int, parent: int | None) -> bool:
        """Whether an attribute the table does not name may stay: defined by an accepted IOD at this
        place (the top level, or the items of sequence ``parent``), or added by the administrator."""
        if tag in self._keep_anywhere:
            return True
        return tag in self._keep_top if parent is None else tag in self._keep_in.get(parent, ())


def resolve(action: str, attr_type: str | None) -> str:
    """Resolve a compound action by the attribute's Type in the IOD (``None``: nested or unknown).

    PS3.15 E.1.1: the removal or emptying choice is allowed only where the IOD permits it, so a
    Type 1 attribute gets a dummy (never empty) and a Type 2 one zero length.
    """
    required = attr_type in ("1", "1C")
    type2 = attr_type in ("2", "2C")
    if action == "X":
        return "D" if required else "X"
    if action == "Z":
        return "D" if required else "Z"
    if action == "X/Z":
        return "D" if required else ("Z" if type2 or attr_type is None else "X")
    if action in ("X/D", "Z/D"):
        return "D" if required or attr_type is None else ("Z" if type2 else ("X" if action == "X/D" else "Z"))
    if action == "X/Z/D":
        return "D" if required or attr_type is None else ("Z" if type2 else "X")
    if action == "X/Z/U*":
        return "U*" if required or attr_type is None else ("Z" if type2 else "X")
    return action
