"""The digital mask's parameters: everything needed to re-render a mask, and nothing that rebuilds a face.

Schema ``digimask.params/2`` (JSON, stored in the DIGIMASK private block; ``/1`` blocks, without reflexes,
still render):

- ``template``: template id and version; every avatar uses this same neutral head.
- ``mode``: ``face`` (full-face photo) or ``closeup`` (external-eye close-up).
- ``camera``: image size, focal length and principal point in pixels (pinhole).
- ``head``: yaw/pitch/roll in degrees and translation in millimetres (camera frame: x right, y up, z toward
  the viewer).
- ``eyes``: per eye, in millimetres on the template's eye frame (x lateral, y up): canthus shifts, the
  upper and lower lid contour as 3 sine coefficients each (the lid's height profile between the canthi),
  eyeball rotation (gaze, degrees), iris radius, and the corneal light reflex where the patient's was
  measured (its offset from the limbus centre in iris radii, image axes x right / y down; absent: none).
- ``measurements``: the analysis stage's clinical figures in mm and degrees (pixel-valued fields dropped).
- ``greyscale``: render the luminance only (the input was greyscale).
- ``renderer``: the backend that drew it, so a re-render is bit-identical.

No landmark, contour point or face-shape coefficient is stored: the only shape that varies is the lid
aperture of the shared template.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from digimask.pipeline.eyes.landmarks import SIDES

SCHEMA = "digimask.params/2"
READABLE_SCHEMAS = ("digimask.params/1", SCHEMA)
LID_COEFFICIENTS = 3


@dataclass(frozen=True)
class Camera:
    width: int
    height: int
    focal_px: float
    cx: float
    cy: float


@dataclass(frozen=True)
class Head:
    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    translation_mm: tuple[float, float, float] = (0.0, 0.0, -500.0)


@dataclass(frozen=True)
class Eye:
    medial_shift_mm: tuple[float, float] = (0.0, 0.0)
    lateral_shift_mm: tuple[float, float] = (0.0, 0.0)
    upper_lid_mm: tuple[float, ...] = (0.0,) * LID_COEFFICIENTS
    lower_lid_mm: tuple[float, ...] = (0.0,) * LID_COEFFICIENTS
    gaze_yaw_deg: float = 0.0  # > 0 toward the patient's left
    gaze_pitch_deg: float = 0.0  # > 0 up
    iris_radius_mm: float = 5.85
    reflex: tuple[float, float] | None = None  # not fitted: drawn where the patient's was measured

    def as_vector(self) -> list[float]:
        """The 13 fitted numbers in the fitter's order (the reflex is not fitted)."""
        return [*self.medial_shift_mm, *self.lateral_shift_mm, *self.upper_lid_mm, *self.lower_lid_mm,
                self.gaze_yaw_deg, self.gaze_pitch_deg, self.iris_radius_mm]

    @classmethod
    def from_vector(cls, v: list[float]) -> Eye:
        v = [round(float(x), 4) for x in v]
        k = LID_COEFFICIENTS
        return cls(tuple(v[0:2]), tuple(v[2:4]), tuple(v[4:4 + k]), tuple(v[4 + k:4 + 2 * k]),
                   v[4 + 2 * k], v[5 + 2 * k], v[6 + 2 * k])


@dataclass(frozen=True)
class AvatarParams:
    template: str
    mode: str
    camera: Camera
    head: Head
    eyes: dict[str, Eye]
    measurements: dict[str, Any] | None = None
    greyscale: bool = False  # render the luminance (greyscale inputs stay greyscale)
    renderer: str = "moderngl"  # backend that drew the mask (others give nearly, not bit-, identical pixels)
    schema: str = field(default=SCHEMA)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["eyes"] = {side: asdict(eye) for side, eye in self.eyes.items()}
        return _jsonable(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AvatarParams:
        if d.get("schema") not in READABLE_SCHEMAS:
            raise ValueError(f"unsupported parameter schema {d.get('schema')!r}; expected one of {READABLE_SCHEMAS}")
        eyes = {}
        for side, e in d["eyes"].items():
            if side not in SIDES:
                raise ValueError(f"unknown eye {side!r}")
            eyes[side] = Eye(**{k: tuple(v) if isinstance(v, list) else v for k, v in e.items()})
        head = dict(d["head"])
        head["translation_mm"] = tuple(head["translation_mm"])
        return cls(
            template=d["template"], mode=d["mode"], camera=Camera(**d["camera"]), head=Head(**head),
            eyes=eyes, measurements=d.get("measurements"), greyscale=bool(d.get("greyscale", False)),
            renderer=str(d.get("renderer", "moderngl")),
        )


def clean_measurements(m: Any) -> Any:
    """The analysis' measurements without pixel-valued fields (positions in the patient's image), in the
    form they take after a JSON round trip (sequences as lists)."""
    if isinstance(m, dict):
        return {k: clean_measurements(v) for k, v in m.items() if not k.endswith("_px")}
    if isinstance(m, (list, tuple)):
        return [clean_measurements(v) for v in m]
    return m


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item"):  # numpy scalars
        return x.item()
    return x
