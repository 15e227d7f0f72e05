"""Attack metrics on hand-computed cases, and the dlib recognizer on real photos."""
from __future__ import annotations

import numpy as np
import pytest
from digimask.evaluation.attacks import (
    DlibResNet,
    Embeddings,
    attack,
    locate,
    rank1_credit,
    roc_auc,
    roc_curve,
    wilson_interval,
)
from digimask.evaluation.landmarks import detect_face


def _emb(vectors, identities, images=None, sessions=None) -> Embeddings:
    vectors = np.asarray(vectors, dtype=float)
    images = np.arange(len(vectors)) if images is None else np.asarray(images)
    sessions = images.astype(str) if sessions is None else np.asarray(sessions)
    return Embeddings(vectors, np.asarray(identities), images, sessions)


def test_auc_separated_reversed_and_tied():
    assert roc_auc(np.array([0.1, 0.2]), np.array([0.3, 0.4])) == 1.0
    assert roc_auc(np.array([0.3, 0.4]), np.array([0.1, 0.2])) == 0.0
    # pairs (g, i): (.1,.3) win, (.1,.5) win, (.5,.3) loss, (.5,.5) tie -> 2.5 / 4
    assert roc_auc(np.array([0.1, 0.5]), np.array([0.3, 0.5])) == pytest.approx(0.625)
    assert np.isnan(roc_auc(np.array([]), np.array([0.3])))


def test_roc_curve_ends_at_corners():
    fpr, tpr = roc_curve(np.array([0.1, 0.4]), np.array([0.3, 0.5]))
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)


def test_wilson_interval_known_values():
    # 6 of 6: lower bound n / (n + z^2) = 6 / 9.8416
    assert wilson_interval(1.0, 6) == (pytest.approx(6 / (6 + 1.96**2)), pytest.approx(1.0))
    low, high = wilson_interval(0.5, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)
    assert all(np.isnan(wilson_interval(0.5, 0)))


def test_rank1_credit_shares_ties():
    labels = np.array(["a", "b", "c"])
    assert rank1_credit(np.array([0.1, 0.2, 0.3]), labels, "a") == 1.0
    assert rank1_credit(np.array([0.1, 0.2, 0.3]), labels, "b") == 0.0
    assert rank1_credit(np.array([0.2, 0.2, 0.3]), labels, "b") == 0.5


def test_attack_known_answer():
    gallery = _emb([[0, 0], [0, 1], [10, 0], [10, 1]], ["a", "a", "b", "b"])
    # probe 0 (a) sits near b's photos: a miss; probe 1 (b) next to b: a hit
    probes = _emb([[9.8, 0], [10, 0.9]], ["a", "b"], images=[0, 3])
    result = attack(probes, gallery, threshold=0.6, leave_one_out=False).result
    assert result.rank1 == 0.5 and result.chance_rank1 == 0.5
    # genuine distances: probe0-a: 9.8, ~9.85; probe1-b: ~0.9, 0.1 -> 1 of 4 below 0.6
    assert result.verification_rate == 0.25
    # impostors: probe0-b: 0.2, ~1.02; probe1-a: ~10.0, ~10.0 -> 1 of 4
    assert result.false_match_rate == 0.25
    assert (result.n_probes, result.n_genuine_pairs, result.n_impostor_pairs) == (2, 4, 4)


def test_leave_one_out_drops_own_photo_and_lonely_identities():
    same = _emb([[1, 1]] * 5, ["a", "a", "b", "b", "c"])  # e.g. a blank masker on both sides
    result = attack(same, same, threshold=0.6, leave_one_out=True).result
    assert result.n_probes == 4  # "c" has no other photo
    # every distance ties: a's probe sees {a, b, c} (3 ids), credit 1/3 = chance
    assert result.rank1 == pytest.approx(1 / 3) == pytest.approx(result.chance_rank1)
    assert result.auc == 0.5


def test_other_sessions_drops_the_probes_sitting():
    # a1 and a2 are frames of one sitting and nearly identical; a3 is another photo of a, far away
    emb = _emb([[0, 0], [0, 0.1], [5, 5], [1, 0]], ["a", "a", "a", "b"], sessions=["s", "s", "t", "u"])
    same_sitting = attack(emb, emb, threshold=0.6, leave_one_out=True).result
    other = attack(emb, emb, threshold=0.6, leave_one_out=True, other_sessions=True).result
    # probes a1, a2 find each other; a3 is nearest b (dist 5.0 vs 6.4, 7.1) -> 2 of 3 "a" probes hit,
    # b has no other photo and is no probe
    assert same_sitting.n_probes == 3 and same_sitting.rank1 == pytest.approx(2 / 3)
    # across sittings a1, a2 only see a3 and b (b nearer): misses; a3 sees a1, a2 vs b: b is nearer
    assert other.n_probes == 3 and other.rank1 == 0.0


@pytest.fixture(scope="module")
def recognizer() -> DlibResNet:
    return DlibResNet()


def test_dlib_recognizes_same_person_and_rejects_another(astronaut, grace_hopper, recognizer):
    flipped = np.ascontiguousarray(astronaut[:, ::-1])
    faces = [detect_face(img) for img in (astronaut, flipped, grace_hopper)]
    assert all(f is not None for f in faces)
    a, a_flip, g = (recognizer.embed(img, f) for img, f in zip((astronaut, flipped, grace_hopper), faces))
    assert a.shape == (128,)
    assert np.linalg.norm(a - a_flip) < recognizer.threshold < np.linalg.norm(a - g)


def test_locate_falls_back_to_the_original_alignment(astronaut):
    face = detect_face(astronaut)
    assert locate(astronaut, face)[1] is True
    blank = np.zeros_like(astronaut)
    found, detected = locate(blank, face)
    assert detected is False and found is face
