"""The pre-scanned scene: a point cloud in the map frame, indexed once for per-frame ROI queries.

Per-frame work must not grow with the map: the scene is cleaned, voxelised (2 cm, as the
official scenes) and put in a k-d tree once; each person then costs three ball queries of
radius 1.25 m around the ROI anchors, and the frustum test runs on those candidates only.
"""

from __future__ import annotations

import numpy as np
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

        ROI = points within ``radius`` of any of the 3 anchors, inside the crop box's frustum
        (0.5 to 12.5 m) - the official frustum-then-ROI selection, done in the cheaper order.

        Args:
            anchors_camera: (3, 3) ROI anchors, camera frame.
            T_map_camera: (4, 4); K: (3, 3); bbx_lurb: (4,).

        Returns:
            (k, 3) float64 camera-frame points, ordered by scene index (deterministic); k may be 0.
        """
        if self._tree is None:
            return np.zeros((0, 3))
        anchors_map = transform_points(T_map_camera, np.asarray(anchors_camera, dtype=np.float64))
        hits = self._tree.query_ball_point(anchors_map, r=radius)
        idx = np.unique(np.concatenate([np.asarray(h, dtype=np.int64) for h in hits]))
        if len(idx) == 0:
            return np.zeros((0, 3))
        pts_cam = transform_points(invert_transform(T_map_camera), self.points_map[idx].astype(np.float64))
        return pts_cam[in_crop_frustum(pts_cam, K, bbx_lurb)]
