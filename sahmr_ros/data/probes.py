"""Small synthetic inputs of a known shape for benchmarks and tests (nothing read or written).

:func:`person_roi_voxels` is the sparse CNN's typical input: the 5 cm voxels of a region of interest around
a person 3 m in front of the camera. ``bench/sparse.py`` times the SPVCNN on it and
``test/test_sparse_torch.py`` checks the sparse backends on it.
"""

from __future__ import annotations

import torch

from sahmr_ros import constants as C

__all__ = ["person_roi_voxels"]


def person_roi_voxels(seed: int = 0, root=(0.1, 0.2, 3.0), radius: float = C.ROI_RADIUS_M) -> torch.Tensor:
    """Return the (N, 4) int32 voxels ``[batch 0, x, y, z]`` of a person, floor and wall around ``root``.

    A standing person, the floor under them and a wall behind them, within ``radius`` of ``root``.
    Camera frame (x right, y down, z forward), metres; 5 cm voxels (:data:`constants.CONTACT_VOXEL_M`),
    ``floor(p / 0.05)``, so many coordinates are negative. About 2,900 voxels with the defaults.
    """
    g = torch.Generator().manual_seed(seed)
    r = torch.tensor(root, dtype=torch.float64)
    body = torch.randn(60000, 3, generator=g, dtype=torch.float64)
    body = body / body.norm(dim=1, keepdim=True) * torch.tensor([0.22, 0.85, 0.14], dtype=torch.float64) + r
    floor = (torch.rand(60000, 3, generator=g, dtype=torch.float64) - 0.5) * 2 * radius + r
    floor[:, 1] = r[1] + 0.88
    wall = (torch.rand(60000, 3, generator=g, dtype=torch.float64) - 0.5) * 2 * radius + r
    wall[:, 2] = r[2] + 0.9
    pts = torch.cat([body, floor, wall])
    pts = pts[(pts - r).norm(dim=1) < radius]
    xyz = torch.unique(torch.floor(pts / C.CONTACT_VOXEL_M).to(torch.int64), dim=0)
    return torch.cat([torch.zeros(len(xyz), 1, dtype=torch.int64), xyz], 1).to(torch.int32)
