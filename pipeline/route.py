"""Routing: which destinations receive an instance, by the administrator's rules.

Rules are evaluated on the received header (in memory only; nothing is logged or stored) plus the
association's AE titles. Every matching rule contributes its destinations (union, in rule order).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from digimask.config.settings import Match, Route, TagMatch
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset


def _tag(name: str) -> int:
    tag = tag_for_keyword(name)
    return tag if tag is not None else int(name.replace(",", ""), 16)


def _value(ds: Dataset, tag: int) -> str | None:
    elem = ds.get(tag)
    if elem is None or elem.value in (None, ""):
        return None
    value = elem.value
    if elem.VM > 1:
        return "\\".join(str(v) for v in value)
    return str(value)


def _tag_ok(ds: Dataset, cond: TagMatch) -> bool:
    value = _value(ds, _tag(cond.tag))
    if cond.present is not None:
        return (value is not None) == cond.present
    if value is None:
        return False
    if cond.equals is not None:
        return value == cond.equals
    return re.fullmatch(cond.regex or "", value) is not None


def matches(match: Match, ds: Dataset, calling_ae: str, called_ae: str) -> bool:
    if match.calling_ae is not None and not re.fullmatch(match.calling_ae, calling_ae):
        return False
    if match.called_ae is not None and not re.fullmatch(match.called_ae, called_ae):
        return False
    if match.sop_class_uid and str(ds.get("SOPClassUID", "")) not in match.sop_class_uid:
        return False
    if match.modality and str(ds.get("Modality", "")) not in match.modality:
        return False
    return all(_tag_ok(ds, cond) for cond in match.tags)


class Router:
    def __init__(self, routes: Sequence[Route]) -> None:
        self.routes = list(routes)

    def destinations(self, ds: Dataset, calling_ae: str, called_ae: str) -> list[str]:
        out: list[str] = []
        for route in self.routes:
            if matches(route.match, ds, calling_ae, called_ae):
                out += [d for d in route.destinations if d not in out]
        return out
