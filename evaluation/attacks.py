"""Re-identification attacks on masked images, and the metrics that score them.

An attack compares probe embeddings (masked images) with a gallery of embeddings of known identities:
rank-1 identification (is the nearest identity the right one?), verification at the recognizer's
same-person threshold (is a genuine pair accepted?), and ROC AUC over all probe-gallery pairs.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Protocol

import numpy as np
from digimask.evaluation.landmarks import Face, detect_face, model_path


class Recognizer(Protocol):
    """A face recognizer: embeddings whose Euclidean distance is small for the same person."""

    name: str
    threshold: float  # distance below which two faces are declared the same person

    def embed(self, image: np.ndarray, face: Face) -> np.ndarray: ...


class DlibResNet:
    """dlib's 128-d ResNet face embedding (face_recognition_models 0.3.0); same person below 0.6."""

    name = "dlib_resnet"
    threshold = 0.6

    @cached_property
    def _net(self):
        import dlib

        return dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition_resnet_model_v1.dat")))

    def embed(self, image: np.ndarray, face: Face) -> np.ndarray:
        """Embed the face chip aligned by ``face``'s 5 points (which may come from another image of the
        same geometry: the attacker knows where the face is)."""
        return np.asarray(self._net.compute_face_descriptor(np.ascontiguousarray(image), face.shape5))


def locate(image: np.ndarray, fallback: Face) -> tuple[Face, bool]:
    """The attacker's alignment for a masked image: its own detected face, else the original's (masks
    keep the geometry, so the attacker may align on where the face was). Returns (face, detected)."""
    face = detect_face(image)
    return (face, True) if face is not None else (fallback, False)


@dataclass(frozen=True)
class Embeddings:
    vectors: np.ndarray  # (n, d)
    identities: np.ndarray  # (n,) identity labels
    images: np.ndarray  # (n,) corpus image index: the same index on both sides means the same photo
    sessions: np.ndarray  # (n,) sitting the photo was taken in (unique per photo where unknown)


@dataclass(frozen=True)
class AttackResult:
    rank1: float
    rank1_ci95: tuple[float, float]  # Wilson score interval
    chance_rank1: float
    verification_rate: float  # genuine pairs accepted at the threshold
    false_match_rate: float  # impostor pairs accepted: the verification rate an unrelated image gets
    auc: float
    chance_auc: float
    n_probes: int
    n_genuine_pairs: int
    n_impostor_pairs: int

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Attack:
    result: AttackResult
    genuine: np.ndarray  # distances of genuine pairs
    impostor: np.ndarray  # distances of impostor pairs


def attack(
    probes: Embeddings, gallery: Embeddings, threshold: float, *, leave_one_out: bool, other_sessions: bool = False
) -> Attack:
    """Run one attack. With ``leave_one_out`` the gallery entry of the probe's own photo is excluded (it
    must be when probe and gallery went through the same deterministic masker); with ``other_sessions``
    so are all photos of the probe's sitting. Probes whose identity then has no gallery entry are
    skipped."""
    dist = np.linalg.norm(probes.vectors[:, None, :] - gallery.vectors[None, :, :], axis=2)
    usable = np.ones_like(dist, dtype=bool)
    if leave_one_out:
        usable &= probes.images[:, None] != gallery.images[None, :]
    if other_sessions:
        usable &= probes.sessions[:, None] != gallery.sessions[None, :]
    same = probes.identities[:, None] == gallery.identities[None, :]
    hits, chances, genuine, impostor = [], [], [], []
    for i in range(len(dist)):
        ok = usable[i]
        if not (ok & same[i]).any():
            continue
        ids = gallery.identities[ok]
        labels = np.unique(ids)
        nearest = np.array([dist[i, ok][ids == label].min() for label in labels])
        hits.append(rank1_credit(nearest, labels, probes.identities[i]))
        chances.append(1.0 / len(labels))
        genuine.append(dist[i, ok & same[i]])
        impostor.append(dist[i, ok & ~same[i]])
    gen = np.concatenate(genuine) if genuine else np.empty(0)
    imp = np.concatenate(impostor) if impostor else np.empty(0)
    result = AttackResult(
        rank1=_mean(hits),
        rank1_ci95=wilson_interval(_mean(hits), len(hits)),
        chance_rank1=_mean(chances),
        verification_rate=_mean(gen < threshold),
        false_match_rate=_mean(imp < threshold),
        auc=roc_auc(gen, imp),
        chance_auc=0.5,
        n_probes=len(hits),
        n_genuine_pairs=len(gen),
        n_impostor_pairs=len(imp),
    )
    return Attack(result, gen, imp)


def wilson_interval(rate: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a rate observed over ``n`` trials (Wilson, JASA 1927;22:209-12)."""
    if n == 0 or np.isnan(rate):
        return (float("nan"), float("nan"))
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (float(max(0.0, centre - half)), float(min(1.0, centre + half)))


def rank1_credit(distances: np.ndarray, labels: np.ndarray, truth: object) -> float:
    """1 if ``truth`` is the single nearest label; 1/k if it ties with k-1 others (the expected score of
    an attacker who breaks ties at random); else 0."""
    tied = labels[distances == distances.min()]
    return float(truth in tied) / len(tied)


def roc_auc(genuine: np.ndarray, impostor: np.ndarray) -> float:
    """Probability that a genuine pair is closer than an impostor pair, ties counting half
    (the Mann-Whitney U statistic divided by n_genuine * n_impostor)."""
    if len(genuine) == 0 or len(impostor) == 0:
        return float("nan")
    ranks = _average_ranks(-np.concatenate([genuine, impostor]))  # higher rank = more similar
    n_g, n_i = len(genuine), len(impostor)
    u = ranks[:n_g].sum() - n_g * (n_g + 1) / 2
    return float(u / (n_g * n_i))


def roc_curve(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) as the distance threshold sweeps over all values."""
    thresholds = np.unique(np.concatenate([genuine, impostor, [-np.inf]]))
    tpr = np.array([(genuine <= t).mean() if len(genuine) else np.nan for t in thresholds])
    fpr = np.array([(impostor <= t).mean() if len(impostor) else np.nan for t in thresholds])
    return fpr, tpr


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(len(values))
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_vals[end] != sorted_vals[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def _mean(values) -> float:
    values = np.asarray(values, dtype=float)
    return float(values.mean()) if values.size else float("nan")
