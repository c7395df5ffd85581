"""The pre-scanned scene: a point cloud in the map frame, indexed once for per-frame ROI queries.

Per-frame work must not grow with the map: the scene is cleaned, voxelised (2 cm, as the
official scenes) and put in a k-d tree once; per frame, the three ROI anchors of every person
(radius 1.25 m) go through one dual-tree query, and the camera transform and frustum test run on
those candidates only.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.geometry import in_crop_frustum, invert_transform, transform_points, voxel_downsample

__all__ = ["Scene"]


class Scene:
    """A scene point cloud in the map frame with a spatial index.

    Args:
        points_map: (N, 3) float points, map frame, metres. NaN / inf rows are dropped, and so are
            rows farther than ``constants.MAX_COORDINATE_M`` from the origin (float32 storage).
        pitch: voxel size of the stored cloud (2 cm as in SA-HMR); ``None`` keeps the points as
            given (already voxelised clouds).

    Attributes:
        points_map: (M, 3) float32 cleaned (and voxelised) points.
        num_input_points, num_dropped_nonfinite, num_dropped_out_of_range: bookkeeping for logs
            and diagnostics.
    """

    def __init__(self, points_map: np.ndarray, pitch: float | None = C.SCENE_PITCH_M):
        pts = np.asarray(points_map)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise InputError(f"scene points: expected an (N, 3) array of map-frame points, got shape {pts.shape}")
        if not np.issubdtype(pts.dtype, np.number):
            raise InputError(f"scene points: expected a numeric array, got dtype {pts.dtype}")
        with np.errstate(invalid="ignore"):  # NaN rows compare False: dropped as non-finite below
            finite = np.isfinite(pts).all(axis=1)
            in_range = (np.abs(pts) <= C.MAX_COORDINATE_M).all(axis=1)
        self.num_input_points = len(pts)
        self.num_dropped_nonfinite = int((~finite).sum())
        self.num_dropped_out_of_range = int((finite & ~in_range).sum())
        pts = pts[finite & in_range].astype(np.float64)
        if pitch is not None and len(pts):
            pts = voxel_downsample(pts, pitch)
        self.points_map = np.ascontiguousarray(pts, dtype=np.float32)
        self.pitch = pitch
        self._tree = cKDTree(self.points_map) if len(self.points_map) else None

    def __len__(self) -> int:
        return len(self.points_map)

    def roi_points_camera(
        self,
        anchors_camera: np.ndarray,
        T_map_camera: np.ndarray,
        K: np.ndarray,
        bbx_lurb: np.ndarray,
        radius: float = C.ROI_RADIUS_M,
    ) -> np.ndarray:
        """Scene points of one person's region of interest, in the camera frame.

        One person of :meth:`roi_points_camera_batch`.

        Args:
            anchors_camera: (3, 3) ROI anchors, camera optical frame, metres.
            T_map_camera: (4, 4) camera pose in the map; K: (3, 3); bbx_lurb: (4,) crop box, pixels.
            radius: ROI radius around each anchor, metres.

        Returns:
            (k, 3) float64 camera-frame points, ordered by scene index (deterministic); k may be 0.
        """
        anchors = np.asarray(anchors_camera, dtype=np.float64).reshape(1, 3, 3)
        boxes = np.asarray(bbx_lurb, dtype=np.float64).reshape(1, 4)
        return self.roi_points_camera_batch(anchors, T_map_camera, K, boxes, radius)[0]

    def roi_points_camera_batch(
        self,
        anchors_camera: np.ndarray,
        T_map_camera: np.ndarray,
        K: np.ndarray,
        bbx_lurb: np.ndarray,
        radius: float = C.ROI_RADIUS_M,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Scene points of the regions of interest of B persons, in the camera frame, in one pass.

        ROI of person b = the points within ``radius`` of any of its 3 anchors, inside its crop
        box's frustum (0.5 to 12.5 m) - the official frustum-then-ROI selection, done in the cheaper
        order. A person with a non-finite anchor (broken weights) gets an empty ROI.

        All 3B anchors go through one dual-tree query (a k-d tree of the anchors against the
        scene's), which returns (anchor, scene index) pairs as arrays; the pairs of a person are
        made unique and ordered by one sort of ``person * M + scene index`` keys, and the camera
        transform and frustum test run once on all candidates. Work is proportional to the number
        of candidates (points near the anchors), not to the size of the map.

        Args:
            anchors_camera: (B, 3, 3) ROI anchors, camera optical frame, metres; B may be 0.
            T_map_camera: (4, 4) camera pose in the map (camera optical -> map).
            K: (3, 3) intrinsics.
            bbx_lurb: (B, 4) square crop boxes ``(left, upper, right, bottom)``, full-image pixels.
            radius: ROI radius around each anchor, metres.

        Returns:
            points: (P, 3) float64 ROI points, camera optical frame, metres, grouped by person in
            order 0..B-1 and within a person ordered by scene index (deterministic), and
            person: (P,) int64 non-decreasing person of each point. Person b's points are
            ``points[person == b]``; ``np.bincount(person, minlength=B)`` counts them (0 allowed).
        """
        anchors = np.asarray(anchors_camera, dtype=np.float64).reshape(-1, 3, 3)
        boxes = np.asarray(bbx_lurb, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != len(anchors):
            raise InputError(f"roi: {len(anchors)} anchor triples but {len(boxes)} crop boxes")
        valid = np.flatnonzero(np.isfinite(anchors).all(axis=(1, 2)))  # (B',) persons that query
        if self._tree is None or len(valid) == 0:
            return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
        anchors_map = transform_points(T_map_camera, anchors[valid].reshape(-1, 3))  # (3B', 3), map frame
        pairs = cKDTree(anchors_map).sparse_distance_matrix(self._tree, radius, output_type="ndarray")
        if len(pairs) == 0:
            return np.zeros((0, 3)), np.zeros(0, dtype=np.int64)
        n = len(self.points_map)
        person_of_anchor = np.repeat(valid, 3)  # (3B',) person of each anchor
        keys = person_of_anchor[pairs["i"]] * n + pairs["j"]  # person-major, then scene index
        # torch's sort is several times faster than numpy's here; 32-bit keys sort faster still
        key_dtype = torch.int32 if len(anchors) * n < 2**31 else torch.int64
        keys = torch.unique(torch.from_numpy(keys).to(key_dtype), sorted=True).numpy().astype(np.int64)
        person, index = np.divmod(keys, n)
        pts_cam = transform_points(invert_transform(T_map_camera), self.points_map[index].astype(np.float64))
        inside = in_crop_frustum(pts_cam, K, boxes[person])  # each point against its person's box
        return pts_cam[inside], person[inside]
