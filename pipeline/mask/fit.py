"""Fit the avatar's head pose, eyelids and eyeballs to an analysis, by nonlinear least squares in torch.

No identity shape is fitted: the template never changes. Two batched Levenberg-Marquardt problems:

1. Head pose (6): face mode fits the template's FaceMesh points to the detected ones (eye contours left
   out, they belong to step 2; mouth and jaw left out, they move with expression); close-up mode fits
   roll and translation to the canthi, head frontal.
2. Eyes (13 each, all eyes of the batch together): canthus shifts, lid sine coefficients, gaze and iris
   radius, so the projected canthi, limbus centre and radius, and both lids' heights over the limbus
   centre (what MRD1 and MRD2 measure) land on the patient's measured geometry (heavily weighted: the
   mask draws what was measured), and the lid contours (sampled at fixed fractions between the canthi)
   follow the patient's shape. Contour residuals are point-to-curve: a projected model lid point is
   compared with the patient's lid height at the same position along the patient's canthal axis, so the
   contours may slide along each other. Eye vectors stay inside anatomical bounds (``EYE_LOWER/UPPER``):
   a patient outside them is not drawn exactly, which the mask's geometric check then refuses.

Runs on the CPU in float64 (one device for every worker, so one derived UID always gets the same pixels).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch.func import vmap

# The fit's tensors are tiny (a few hundred points): torch's intra-op threads only contend with each other
# and with the node's other workers (one instance: 185 ms with 1 thread, 535 ms with 2 on 2 busy cores).
torch.set_num_threads(1)

from digimask.pipeline.eyes.analyse import Analysis
from digimask.pipeline.eyes.landmarks import FACEMESH_EYES, EyeLandmarks
from digimask.pipeline.eyes.measure import FOCAL_FACTOR, eye_axes, lid_height
from digimask.pipeline.mask import avatar
from digimask.pipeline.mask.params import (
    AvatarParams,
    Camera,
    Eye,
    Head,
    clean_measurements,
)
from digimask.pipeline.mask.template import IRIS_RADIUS_MM, load

LID_SAMPLES = np.linspace(0.1, 0.9, 9)  # fractions between the canthi where the model's lids are sampled
LID_GRID = np.linspace(0.0, 1.0, 17)  # fractions where the patient's lid heights are tabulated
_EYE_CONTOURS = sorted({i for eye in FACEMESH_EYES.values() for k in ("upper", "lower", "iris") for i in eye[k]})
_POSE_WEIGHT = np.ones(468)
_POSE_WEIGHT[[i for i in _EYE_CONTOURS if i < 468]] = 0.0
_JAW_BELOW_MM = -25.0  # canonical y: mouth and jaw move with expression (an open mouth tilts the fit)
# Residual weights (pixels are the unit) and priors (per mm / degree), chosen so landmarks dominate.
# The measured geometry (canthi, limbus, lid heights over the limbus centre) weighs 10x the contour shape.
_W_CANTHUS, _W_LID, _W_IRIS, _W_RADIUS, _W_MRD = 10.0, 1.0, 10.0, 10.0, 10.0
MRD_SAMPLES = np.linspace(0.0, 1.0, 33)  # model lid samples through which the height over the limbus is read
_PRIOR = np.array([0.05] * 4 + [0.02] * 6 + [0.002, 0.002, 0.01])
STEP_TOL = 1e-5  # mm / degrees: a Levenberg-Marquardt step shorter than this ends the fit
EYE_ITERATIONS = 30
# Anatomical bounds of the eye vector (mm, degrees): a fit never leaves them.
EYE_LOWER = np.array([-10.0] * 4 + [-8.0, -3.0, -3.0, -6.0, -3.0, -3.0, -40.0, -35.0, 4.0])
EYE_UPPER = np.array([10.0] * 4 + [8.0, 3.0, 3.0, 6.0, 3.0, 3.0, 40.0, 35.0, 7.5])


def device() -> torch.device:
    return torch.device("cpu")


@dataclass(frozen=True)
class _EyeProblem:
    p0: np.ndarray  # (13,)
    free: np.ndarray  # (13,) 1 = fitted
    sign: float
    center: np.ndarray
    corners: np.ndarray  # (2, 3) template medial, lateral
    base_upper: np.ndarray  # (K, 3)
    base_lower: np.ndarray
    target: np.ndarray  # (4, 2): medial, lateral, iris centre, (radius, 0), image px
    lids: np.ndarray  # (2, len(LID_GRID)) upper, lower lid height over the canthal axis / canthal distance
    axes: np.ndarray  # (2, 2): the analysis' eye axes u (patient's left), v (up), image px
    mrd: np.ndarray  # (2,): upper lid height over the limbus centre, lower lid depth under it, px
    dense_upper: np.ndarray  # (len(MRD_SAMPLES), 3) template margins where the MRD heights are read
    dense_lower: np.ndarray


def fit(analysis: Analysis) -> AvatarParams:
    """Avatar parameters for one analysed image."""
    return fit_batch([analysis])[0]


def fit_batch(analyses: Sequence[Analysis]) -> list[AvatarParams]:
    """Avatar parameters for several analysed images, solved together."""
    dev = device()
    cameras = [_camera(a) for a in analyses]
    heads = _fit_heads(analyses, cameras, dev)
    problems, owners = [], []
    for i, a in enumerate(analyses):
        axes = np.stack(eye_axes(a.eyes))
        for side, eye in a.eyes.items():
            problems.append(_eye_problem(side, eye, axes))
            owners.append((i, side))
    eyes = _fit_eyes(problems, [heads[i] for i, _ in owners], [cameras[i] for i, _ in owners], dev)
    out = []
    for i, a in enumerate(analyses):
        fitted = {side: replace(Eye.from_vector(eyes[k].tolist()), reflex=_reflex(a.eyes[side]))
                  for k, (j, side) in enumerate(owners) if j == i}
        h = [round(float(x), 4) for x in heads[i]]
        out.append(AvatarParams(
            template=load().id, mode=a.mode, camera=cameras[i],
            head=Head(h[0], h[1], h[2], (h[3], h[4], h[5])), eyes=fitted,
            measurements=clean_measurements(a.measurements.to_dict()),
        ))
    return out


def _reflex(eye: EyeLandmarks) -> tuple[float, float] | None:
    """The measured corneal reflex relative to the limbus centre, in iris radii (image axes)."""
    if eye.reflex is None or not eye.iris_radius > 0:
        return None
    rel = (np.asarray(eye.reflex, float) - eye.iris_center) / eye.iris_radius
    return (round(float(rel[0]), 4), round(float(rel[1]), 4))


def _camera(a: Analysis) -> Camera:
    w, h = a.image_size
    return Camera(int(w), int(h), FOCAL_FACTOR * max(w, h), w / 2.0, h / 2.0)


def _cam_tensor(cams: Sequence[Camera], dev: torch.device) -> torch.Tensor:
    return torch.tensor([[c.focal_px, c.cx, c.cy] for c in cams], dtype=torch.float64, device=dev)


def levenberg_marquardt(residual, p0: torch.Tensor, data: tuple[torch.Tensor, ...], free: torch.Tensor,
                        iterations: int = 20, tol: float = 1e-7,
                        bounds: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:
    """Minimise ``sum(residual(p, *data)**2)`` for each batch row; ``free`` masks the fitted entries.

    ``bounds`` (lower, upper) are enforced by projecting each trial step onto the box.

    The Jacobian comes from forward differences evaluated in one batched call (cheaper on CPU than
    forward-mode autodiff for these small problems, and exact enough in float64).
    """
    res = vmap(residual)
    b, n = p0.shape
    step_h = 1e-6 * (1.0 + p0.abs().max())
    eye = torch.eye(n, dtype=p0.dtype, device=p0.device)
    wide = tuple(d.repeat_interleave(n + 1, dim=0) for d in data)
    p = p0.clone()
    lam = torch.full((b,), 1e-3, dtype=p.dtype, device=p.device)
    r = res(p, *data)
    cost = (r**2).sum(1)
    done = torch.zeros(b, dtype=torch.bool, device=p.device)
    for _ in range(iterations):
        probes = torch.cat([p[:, None, :], p[:, None, :] + step_h * eye[None]], dim=1).reshape(b * (n + 1), n)
        rs = res(probes, *wide).reshape(b, n + 1, -1)
        jmat = ((rs[:, 1:] - rs[:, :1]) / step_h).transpose(1, 2) * free[:, None, :]
        jtj = jmat.transpose(1, 2) @ jmat
        g = (jmat.transpose(1, 2) @ r[..., None])[..., 0]
        diag = torch.diagonal(jtj, dim1=1, dim2=2)
        a = jtj + lam[:, None, None] * (diag[:, :, None] * eye + 1e-9 * eye) + (1 - free)[:, :, None] * eye
        trial = p - torch.linalg.solve(a, g[..., None])[..., 0] * free
        if bounds is not None:
            trial = trial.clamp(torch.as_tensor(bounds[0]).to(trial), torch.as_tensor(bounds[1]).to(trial))
        r_trial = res(trial, *data)
        cost_trial = (r_trial**2).sum(1)
        better = cost_trial < cost
        gain = ((cost - cost_trial) / cost.clamp(min=1e-12)).clamp(min=0)
        # Converged: an accepted step that no longer pays, or a step too short to matter (at the optimum
        # every step fails and only shrinks).
        done |= (better & (gain < tol)) | ((trial - p).abs().amax(1) < STEP_TOL)
        p = torch.where(better[:, None], trial, p)
        r = torch.where(better[:, None], r_trial, r)
        cost = torch.where(better, cost_trial, cost)
        lam = torch.where(better, lam * 0.3, lam * 8.0).clamp(1e-9, 1e9)
        if bool(done.all()):
            break
    return p


def _pose_residual(p: torch.Tensor, model: torch.Tensor, target: torch.Tensor, weight: torch.Tensor,
                   cam: torch.Tensor) -> torch.Tensor:
    proj = avatar.project(avatar.to_camera(model, p), cam)
    return ((proj - target) * weight[:, None]).reshape(-1)


def _fit_heads(analyses: Sequence[Analysis], cameras: Sequence[Camera], dev: torch.device) -> list[np.ndarray]:
    tpl = load()
    p0, models, targets, weights, free = [], [], [], [], []
    for a, cam in zip(analyses, cameras):
        if a.mode == "face" and a.face_landmarks is not None:
            target = np.asarray(a.face_landmarks[:468, :2], dtype=float)
            model = tpl.landmarks.astype(float)
            weight = _POSE_WEIGHT * (model[:, 1] > _JAW_BELOW_MM)
            pose = a.head_pose
            angles = (pose.yaw_deg, pose.pitch_deg, pose.roll_deg) if pose else (0.0, 0.0, 0.0)
            mask = np.ones(6)
        else:  # close-up: canthi only; head frontal
            model, target = _closeup_pose_points(a)
            weight, angles, mask = np.ones(len(model)), (0.0, 0.0, 0.0), np.array([0, 0, 1, 1, 1, 1.0])
        p0.append(_initial_translation(model, target, cam, angles))
        models.append(model)
        targets.append(target)
        weights.append(weight)
        free.append(mask)
    out: list[np.ndarray | None] = [None] * len(analyses)
    # Problems with the same number of points are solved in one batch.
    for n in sorted({len(m) for m in models}):
        idx = [i for i, m in enumerate(models) if len(m) == n]
        t = lambda xs: torch.tensor(np.stack([xs[i] for i in idx]), dtype=torch.float64, device=dev)  # noqa: E731
        cams = _cam_tensor([cameras[i] for i in idx], dev)
        p = levenberg_marquardt(_pose_residual, t(p0), (t(models), t(targets), t(weights), cams), t(free), 25)
        for k, i in enumerate(idx):
            out[i] = p[k].cpu().numpy()
    return out  # type: ignore[return-value]


def _closeup_pose_points(a: Analysis) -> tuple[np.ndarray, np.ndarray]:
    tpl = load()
    model, target = [], []
    for side, eye in a.eyes.items():
        t = tpl.eyes[side]
        model += [t.medial, t.lateral]
        target += [eye.medial_canthus, eye.lateral_canthus]
    return np.asarray(model, dtype=float), np.asarray(target, dtype=float)


def _initial_translation(model: np.ndarray, target: np.ndarray, cam: Camera, angles) -> np.ndarray:
    """Head vector with the given angles and the translation that matches centroid and spread."""
    a = torch.tensor(angles, dtype=torch.float64)
    rotated = model @ avatar.rotation(a[0], a[1], a[2]).numpy().T
    spread_model = np.linalg.norm(rotated[:, :2] - rotated[:, :2].mean(0), axis=1).mean()
    spread_image = np.linalg.norm(target - target.mean(0), axis=1).mean()
    depth = cam.focal_px * spread_model / max(spread_image, 1e-6)
    c = target.mean(0)
    x = (c[0] - cam.cx) * depth / cam.focal_px - rotated[:, 0].mean()
    y = -(c[1] - cam.cy) * depth / cam.focal_px - rotated[:, 1].mean()
    return np.array([*angles, x, y, -depth - rotated[:, 2].mean()])


def _lid_heights(lid: np.ndarray, medial: np.ndarray, lateral: np.ndarray) -> np.ndarray:
    """Lid height above the medial -> lateral canthal axis at ``LID_GRID``, in canthal distances."""
    axis = lateral - medial
    normal = np.array([axis[1], -axis[0]])  # image up for a patient's left eye, down for the right
    rel = lid - medial
    t, h = rel @ axis / (axis @ axis), rel @ normal / (axis @ axis)
    order = np.argsort(t)
    return np.interp(LID_GRID, np.maximum.accumulate(t[order]), h[order])


def _eye_problem(side: str, eye: EyeLandmarks, axes: np.ndarray) -> _EyeProblem:
    tpl = load()
    et = tpl.eyes[side]
    med, lat = np.asarray(eye.medial_canthus, float), np.asarray(eye.lateral_canthus, float)
    target = np.vstack([med, lat, eye.iris_center, [eye.iris_radius, 0.0]]).astype(float)
    lids = np.stack([_lid_heights(np.asarray(lid, float), med, lat) for lid in (eye.upper_lid, eye.lower_lid)])
    u, v = axes
    mrd = np.array([lid_height(np.asarray(eye.upper_lid, float), eye.iris_center, u, v),
                    -lid_height(np.asarray(eye.lower_lid, float), eye.iris_center, u, v)])
    p0 = np.array(Eye().as_vector(), dtype=float)
    p0[12] = IRIS_RADIUS_MM
    return _EyeProblem(
        p0=p0, free=np.ones(13), sign=et.sign, center=et.eyeball_center, corners=np.stack([et.medial, et.lateral]),
        base_upper=avatar.margin_template(et, tpl, LID_SAMPLES, True),
        base_lower=avatar.margin_template(et, tpl, LID_SAMPLES, False), target=target, lids=lids,
        axes=axes, mrd=np.nan_to_num(mrd), dense_upper=avatar.margin_template(et, tpl, MRD_SAMPLES, True),
        dense_lower=avatar.margin_template(et, tpl, MRD_SAMPLES, False),
    )


def _curve_residual(points: torch.Tensor, medial: torch.Tensor, lateral: torch.Tensor,
                    heights: torch.Tensor) -> torch.Tensor:
    """Pixels between projected lid points and the patient's lid at the same place along the axis."""
    axis = lateral - medial
    length2 = (axis**2).sum()
    normal = torch.stack([axis[1], -axis[0]])
    rel = points - medial
    t, h = rel @ axis / length2, rel @ normal / length2
    pos = t.clamp(0, 1) * (len(LID_GRID) - 1)
    hat = (1 - (pos[:, None] - torch.arange(len(LID_GRID), dtype=t.dtype, device=t.device)).abs()).clamp(min=0)
    return (h - hat @ heights) * length2.sqrt()


def height_over(points: torch.Tensor, centre: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Signed height (px, + up along v) of the polyline ``points`` on the line through ``centre`` along v:
    :func:`~digimask.pipeline.eyes.measure.lid_height` in torch (batchable, no data-dependent branches)."""
    a, b = (points - centre) @ u, (points - centre) @ v
    span = a[1:] - a[:-1]
    t = -a[:-1] / torch.where(span == 0, torch.ones_like(span), span)
    inside = ((t >= 0) & (t <= 1)).to(points.dtype)
    value = b[:-1] + t.clamp(0, 1) * (b[1:] - b[:-1])
    return (value * inside).sum() / inside.sum().clamp(min=1)


def _eye_residual(p, head, cam, sign, center, corners, base_upper, base_lower, target, lids, axes, mrd,
                  dense_upper, dense_lower):
    t = torch.as_tensor(LID_SAMPLES, dtype=p.dtype, device=p.device)
    dense = torch.as_tensor(MRD_SAMPLES, dtype=p.dtype, device=p.device)
    ends = torch.tensor([0.0, 1.0], dtype=p.dtype, device=p.device)
    k, n = len(LID_SAMPLES), len(MRD_SAMPLES)
    pts = torch.cat([
        avatar.lid_points(p, ends, corners, sign, center, True),
        avatar.lid_points(p, t, base_upper, sign, center, True),
        avatar.lid_points(p, t, base_lower, sign, center, False),
        avatar.limbus(p, center, sign),
        avatar.lid_points(p, dense, dense_upper, sign, center, True),
        avatar.lid_points(p, dense, dense_lower, sign, center, False),
    ])
    proj = avatar.project(avatar.to_camera(pts, head), cam)
    iris, rim = proj[2 + 2 * k], proj[3 + 2 * k:7 + 2 * k]
    radius = (rim - iris).norm(dim=-1).mean()
    upper, lower = proj[7 + 2 * k:7 + 2 * k + n], proj[7 + 2 * k + n:]
    drawn_mrd = torch.stack([height_over(upper, iris, axes[0], axes[1]), -height_over(lower, iris, axes[0], axes[1])])
    return torch.cat([
        _W_CANTHUS * (proj[:2] - target[:2]).reshape(-1),
        _W_LID * _curve_residual(proj[2:2 + k], target[0], target[1], lids[0]),
        _W_LID * _curve_residual(proj[2 + k:2 + 2 * k], target[0], target[1], lids[1]),
        _W_IRIS * (iris - target[2]),
        _W_RADIUS * (radius - target[3, 0])[None],
        _W_MRD * (drawn_mrd - mrd),
        torch.as_tensor(_PRIOR, dtype=p.dtype, device=p.device) * (p - _prior_mean(p)),
    ])


def _prior_mean(p: torch.Tensor) -> torch.Tensor:
    mean = torch.zeros(13, dtype=p.dtype, device=p.device)
    mean[12] = IRIS_RADIUS_MM
    return mean


def _fit_eyes(problems: list[_EyeProblem], heads: list[np.ndarray], cams: list[Camera],
              dev: torch.device) -> list[np.ndarray]:
    if not problems:
        return []
    t = lambda xs: torch.tensor(np.stack(xs), dtype=torch.float64, device=dev)  # noqa: E731
    data = (
        t(heads), _cam_tensor(cams, dev), t([np.float64(q.sign) for q in problems]), t([q.center for q in problems]),
        t([q.corners for q in problems]), t([q.base_upper for q in problems]), t([q.base_lower for q in problems]),
        t([q.target for q in problems]), t([q.lids for q in problems]), t([q.axes for q in problems]),
        t([q.mrd for q in problems]), t([q.dense_upper for q in problems]), t([q.dense_lower for q in problems]),
    )
    p = levenberg_marquardt(_eye_residual, t([q.p0 for q in problems]), data, t([q.free for q in problems]),
                            EYE_ITERATIONS, bounds=(EYE_LOWER, EYE_UPPER))
    return list(p.cpu().numpy())
