"""The parametric avatar: template + eyelid model + eyeballs + head pose + pinhole camera, in torch.

The same functions drive the fit (differentiable, batched) and the render (evaluated once). Eye
parameter vectors hold 13 numbers (``params.Eye.as_vector`` order): medial and lateral canthus shifts
(2 + 2, mm, eye frame x lateral / y up), upper and lower lid sine coefficients (3 + 3, mm), gaze yaw and
pitch (degrees) and iris radius (mm). Head vectors hold yaw, pitch, roll (degrees) and translation (mm).

The lid model moves the margin of the template's eye opening: along the opening (fraction ``t`` from the
medial to the lateral canthus) a margin point moves by the blend of the two canthus shifts plus
``sum_k c_k sin(k pi t)`` vertically; that vertical part follows the eyeball's curvature in depth. Skin near the margin
follows with precomputed weights (``template.EyeTemplate.region_weights``).
"""
from __future__ import annotations

import numpy as np
import torch

from digimask.pipeline.mask.template import EYEBALL_RADIUS_MM, EyeTemplate, Template

N_EYE = 13
_K = torch.arange(1, 4, dtype=torch.float64)


def rotation(yaw: torch.Tensor, pitch: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """``Rz(roll) @ Ry(yaw) @ Rx(-pitch)`` (degrees), shape ``(..., 3, 3)``."""
    y, p, r = (torch.deg2rad(a) for a in (yaw, pitch, roll))
    one, zero = torch.ones_like(y), torch.zeros_like(y)
    rx = _mat(one, zero, zero, zero, torch.cos(p), torch.sin(p), zero, -torch.sin(p), torch.cos(p))
    ry = _mat(torch.cos(y), zero, torch.sin(y), zero, one, zero, -torch.sin(y), zero, torch.cos(y))
    rz = _mat(torch.cos(r), -torch.sin(r), zero, torch.sin(r), torch.cos(r), zero, zero, zero, one)
    return rz @ ry @ rx


def _mat(*e: torch.Tensor) -> torch.Tensor:
    return torch.stack(e, dim=-1).reshape(*e[0].shape, 3, 3)


def to_camera(points: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """Model points ``(..., N, 3)`` to camera coordinates for head vectors ``(..., 6)``."""
    rot = rotation(head[..., 0], head[..., 1], head[..., 2])
    return points @ rot.transpose(-1, -2) + head[..., None, 3:6]


def project(points: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Camera points ``(..., N, 3)`` to pixels; ``camera`` = (focal, cx, cy); the camera looks down -z."""
    depth = -points[..., 2].clamp(max=-1e-3)
    u = camera[..., 1, None] + camera[..., 0, None] * points[..., 0] / depth
    v = camera[..., 2, None] - camera[..., 0, None] * points[..., 1] / depth
    return torch.stack([u, v], dim=-1)


def margin_template(eye: EyeTemplate, tpl: Template, t: np.ndarray, upper: bool) -> np.ndarray:
    """Template margin position at fractions ``t`` (piecewise-linear along the margin), model mm."""
    idx, ts = (eye.upper_idx, eye.upper_t) if upper else (eye.lower_idx, eye.lower_t)
    order = np.argsort(ts, kind="stable")
    pts = tpl.vertices[idx[order]].astype(np.float64)
    ts = np.maximum.accumulate(ts[order])
    return np.stack([np.interp(t, ts, pts[:, i]) for i in range(3)], axis=-1)


def eyeball_center(p: torch.Tensor, center: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """The globe follows the mean of the two canthus shifts (the whole eye moves together), model mm."""
    mean = 0.5 * (p[..., 0:2] + p[..., 2:4])
    shift = torch.stack([mean[..., 0] * sign, mean[..., 1], torch.zeros_like(mean[..., 0])], dim=-1)
    return center + shift


def lid_points(p: torch.Tensor, t: torch.Tensor, base: torch.Tensor, sign: torch.Tensor, center: torch.Tensor,
               upper: bool) -> torch.Tensor:
    """Displaced margin points ``(..., K, 3)`` for eye vectors ``p (..., 13)`` at ``t (K,)`` from ``base (K, 3)``.

    ``sign`` is the eye's lateral direction along model x; ``center`` the template's eyeball centre.
    """
    center = eyeball_center(p, center, sign)
    tt = t[:, None]
    shift = (1 - tt) * p[..., None, 0:2] + tt * p[..., None, 2:4]  # (..., K, 2) lateral, up
    coef = p[..., 4:7] if upper else p[..., 7:10]
    basis = torch.sin(torch.pi * _K.to(t) * tt)  # (K, 3)
    warped = base[..., :2] + torch.stack([shift[..., 0] * sign, shift[..., 1]], dim=-1)
    lift = (coef[..., None, :] * basis).sum(-1)
    xy = warped + torch.stack([torch.zeros_like(lift), lift], dim=-1)
    dz = _sphere_height(xy, center) - _sphere_height(warped, center)  # the lid slides over the globe
    return torch.cat([xy, (base[..., 2] + dz)[..., None]], dim=-1)


def _sphere_height(xy: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    r2 = (EYEBALL_RADIUS_MM + 0.3) ** 2
    d2 = ((xy - center[:2]) ** 2).sum(-1)
    return torch.sqrt((r2 - d2).clamp(min=0.12 * r2))


def limbus(p: torch.Tensor, center: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Limbus centre and 4 rim points (right, up, left, down of the optical axis), model mm ``(..., 5, 3)``.

    ``center`` is the template's eyeball centre (moved here by the canthus shifts).
    """
    center = eyeball_center(p, center, sign)
    r = p[..., 12].clamp(0.5, EYEBALL_RADIUS_MM * 0.95)
    depth = torch.sqrt(EYEBALL_RADIUS_MM**2 - r**2)
    rot = rotation(p[..., 10], p[..., 11], torch.zeros_like(r))  # columns: rotated x, y, z axes
    offsets = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=p.dtype, device=p.device)
    local = torch.cat([offsets * r[..., None, None], depth[..., None, None].expand(*r.shape, 5, 1)], dim=-1)
    return center[..., None, :] + local @ rot.transpose(-1, -2)


def deformed_vertices(tpl: Template, eyes: dict[str, torch.Tensor]) -> torch.Tensor:
    """All template vertices ``(N, 3)`` with each eye's lids set by its vector (no batch).

    Canthus shifts warp the eye region with a wide falloff; the lid contour's own displacement (sine
    terms and the eyeball-following depth) spreads to nearby skin with the template's margin weights.
    On the margin the sum equals :func:`lid_points`.
    """
    f64 = torch.float64
    verts = torch.as_tensor(tpl.vertices, dtype=f64).clone()
    for side, eye in tpl.eyes.items():
        p = eyes[side].to(f64)
        sign = torch.tensor(eye.sign, dtype=f64)
        center = torch.as_tensor(eye.eyeball_center, dtype=f64)
        wt = torch.as_tensor(eye.warp_t, dtype=f64)[:, None]
        shift = ((1 - wt) * p[0:2] + wt * p[2:4]) * torch.as_tensor(eye.warp_gain, dtype=f64)[:, None]
        warp = torch.zeros(len(tpl.vertices), 3, dtype=f64)
        warp[eye.warp_idx, 0] = shift[:, 0] * sign
        warp[eye.warp_idx, 1] = shift[:, 1]
        own = []
        for idx, ts, upper in ((eye.upper_idx, eye.upper_t, True), (eye.lower_idx, eye.lower_t, False)):
            base = torch.as_tensor(tpl.vertices[idx], dtype=f64)
            t = torch.as_tensor(ts, dtype=f64)
            own.append(lid_points(p, t, base, sign, center, upper) - base - warp[idx])
        weights = torch.as_tensor(eye.region_weights, dtype=f64)
        verts = verts + warp
        verts[eye.region_idx] = verts[eye.region_idx] + weights @ torch.cat(own)
        verts[eye.warp_idx] = _outside_globe(verts[eye.warp_idx], eyeball_center(p, center, sign))
    return verts


def _outside_globe(points: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Skin pushed forward where a large canthus shift slid deeper skin over the eyeball."""
    r2 = (EYEBALL_RADIUS_MM + 0.3) ** 2
    front = center[2] + torch.sqrt((r2 - ((points[:, :2] - center[:2]) ** 2).sum(-1)).clamp(min=0))
    inside = ((points - center) ** 2).sum(-1) < r2
    z = torch.where(inside & (points[:, 2] < front), front, points[:, 2])
    return torch.cat([points[:, :2], z[:, None]], dim=1)
