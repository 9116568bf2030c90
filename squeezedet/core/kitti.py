"""KITTI object label / result files (the devkit's text format), read strictly, written atomically.

A label line has 15 fields; a result line has 16 (score last). Malformed input raises DataError
naming the file and line, so a bad file in a 7,000-image dataset is found in seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from squeezedet.core.io import atomic_write_text
from squeezedet.errors import DataError

#: Every type the KITTI object devkit knows.
KITTI_TYPES = (
    "Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc", "DontCare",
)


@dataclass
class KittiObject:
    """One object of a KITTI label or result line (2D fields are what detection uses)."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels
    dimensions: tuple[float, float, float] = (-1.0, -1.0, -1.0)  # h, w, l (m)
    location: tuple[float, float, float] = (-1000.0, -1000.0, -1000.0)  # x, y, z (m)
    rotation_y: float = -10.0
    score: float | None = None

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]

    @property
    def level(self) -> int:
        """KITTI difficulty of this label as the original SqueezeDet code rated it (see ``kitti_levels``)."""
        return int(kitti_levels(self.bbox[3] - self.bbox[1], self.truncated, self.occluded))

    def to_line(self) -> str:
        vals = [
            self.type,
            f"{self.truncated:.2f}",
            f"{int(self.occluded)}",
            f"{self.alpha:.2f}",
            *(f"{v:.2f}" for v in self.bbox),
            *(f"{v:.2f}" for v in self.dimensions),
            *(f"{v:.2f}" for v in self.location),
            f"{self.rotation_y:.2f}",
        ]
        if self.score is not None:
            vals.append(f"{self.score:.6f}")
        return " ".join(vals)


def kitti_levels(heights, truncated, occluded) -> np.ndarray:
    """KITTI difficulty of boxes as the original SqueezeDet code's ``get_obj_level``: 1 easy, 2 moderate,
    3 hard, 4 harder than hard; heights in pixels as x2 - x1 (counted inclusively, + 1, as it did)."""
    h = np.asarray(heights, np.float64) + 1
    t, o = np.asarray(truncated, np.float64), np.asarray(occluded, np.float64)
    return np.select(
        [(h >= 40) & (t <= 0.15) & (o <= 0), (h >= 25) & (t <= 0.3) & (o <= 1), (h >= 25) & (t <= 0.5) & (o <= 2)],
        [1, 2, 3],
        4,
    )


def parse_kitti_line(line: str, where: str, with_score: bool | None = None) -> KittiObject:
    """Parse one line; ``where`` is 'file:line' for the error message. with_score None = either."""
    fields = line.split()
    n = len(fields)
    allowed = {15, 16} if with_score is None else ({16} if with_score else {15})
    if n not in allowed:
        want = " or ".join(str(a) for a in sorted(allowed))
        raise DataError(f"{where}: expected {want} fields, got {n}: {line.strip()!r}")
    name = fields[0]
    if name not in KITTI_TYPES:
        raise DataError(f"{where}: unknown object type {name!r} (KITTI types: {', '.join(KITTI_TYPES)})")
    try:
        nums = [float(v) for v in fields[1:]]
    except ValueError as exc:
        raise DataError(f"{where}: non-numeric field ({exc}): {line.strip()!r}") from None
    if not all(np.isfinite(nums)):
        raise DataError(f"{where}: non-finite value: {line.strip()!r}")
    x1, y1, x2, y2 = nums[3:7]
    if x2 < x1 or y2 < y1:
        raise DataError(f"{where}: box has x2 < x1 or y2 < y1: {line.strip()!r}")
    return KittiObject(
        type=name,
        truncated=nums[0],
        occluded=int(round(nums[1])),
        alpha=nums[2],
        bbox=(x1, y1, x2, y2),
        dimensions=tuple(nums[7:10]),
        location=tuple(nums[10:13]),
        rotation_y=nums[13],
        score=nums[14] if n == 16 else None,
    )


def read_kitti_file(path, with_score: bool | None = None, missing_ok: bool = False) -> list[KittiObject]:
    """All objects of a label (with_score=False) or result (with_score=True) file."""
    path = Path(path)
    if not path.is_file():
        if missing_ok:
            return []
        raise DataError(f"{path}: file not found")
    objs = []
    with path.open("r", encoding="utf-8", errors="strict") as fh:
        try:
            for i, line in enumerate(fh, start=1):
                if line.strip():
                    objs.append(parse_kitti_line(line, f"{path}:{i}", with_score))
        except UnicodeDecodeError:
            raise DataError(f"{path}: not a UTF-8 text file") from None
    return objs


def read_labels(path) -> list[KittiObject]:
    return read_kitti_file(path, with_score=False)


def read_results(path, missing_ok: bool = True) -> list[KittiObject]:
    """Result file of one image; a missing file means no detections (as the devkit treats it)."""
    return read_kitti_file(path, with_score=True, missing_ok=missing_ok)


def write_results(path, names, boxes, scores) -> Path:
    """Write one image's detections as a devkit result file (atomically); 3D fields get dummy values."""
    lines = []
    for name, box, score in zip(names, np.asarray(boxes).reshape(-1, 4), np.asarray(scores).reshape(-1)):
        obj = KittiObject(type=name, truncated=-1, occluded=-1, alpha=-10, bbox=tuple(float(v) for v in box),
                          score=float(score))
        lines.append(obj.to_line())
    return atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))


def read_split(path) -> list[str]:
    """Image ids (e.g. '000042') listed one per line in a split file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    ids = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if len(s.split()) != 1:
            raise DataError(f"{path}:{i}: expected one image id per line, got {s!r}")
        ids.append(s)
    return ids


def kitti_name_for(class_name: str) -> str:
    """KITTI type name of one of our lower-case class names (car -> Car, person_sitting -> Person_sitting)."""
    for t in KITTI_TYPES:
        if t.lower() == class_name.lower():
            return t
    return class_name[:1].upper() + class_name[1:]
