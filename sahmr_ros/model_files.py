"""The files a model directory holds, what each is, and where it comes from.

Layout (flat, as ``models/README.md`` describes)::

    MODEL_DIR/smpl/SMPL_NEUTRAL.pkl        (or .npz; licensed, each user downloads it)
    MODEL_DIR/J_regressor_h36m_correct.npy
    MODEL_DIR/mesh_downsampling.npz
    MODEL_DIR/seg_part_info.npy
    MODEL_DIR/*.pt                         (sahmr_ros checkpoints)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ModelFile", "MODEL_FILES", "FileStatus", "model_file_status", "SMPL_CANDIDATES"]

_OFFICIAL = "https://github.com/zju3dv/SA-HMR"

SMPL_CANDIDATES = (
    "smpl/SMPL_NEUTRAL.pkl",
    "smpl/SMPL_NEUTRAL.npz",
    "smpl/basicModel_neutral_lbs_10_207_0_v1.0.0.pkl",
)


@dataclass(frozen=True)
class ModelFile:
    """One required model file: path relative to the model dir (first of ``alternatives`` wins)."""

    relative_path: str
    description: str
    source: str
    alternatives: tuple[str, ...] = ()

    def candidates(self) -> tuple[str, ...]:
        return (self.relative_path,) + self.alternatives


MODEL_FILES = (
    ModelFile(
        SMPL_CANDIDATES[0],
        "SMPL neutral body model (6890 vertices)",
        "https://smpl.is.tue.mpg.de (free registration; non-commercial research licence), "
        "'SMPL for Python' v1.0.0 neutral model, renamed to SMPL_NEUTRAL.pkl",
        SMPL_CANDIDATES[1:],
    ),
    ModelFile(
        "J_regressor_h36m_correct.npy",
        "H36M joint regressor (17 x 6890)",
        f"{_OFFICIAL} lib/networks/pose/sahmr/data/J_regressor_h36m_correct.npy (MIT)",
    ),
    ModelFile(
        "mesh_downsampling.npz",
        "mesh down-sampling 6890 -> 1723 -> 431",
        f"{_OFFICIAL} lib/networks/pose/sahmr/data/mesh_downsampling.npz (MIT)",
    ),
    ModelFile(
        "seg_part_info.npy",
        "contact part ids of the vertices",
        f"{_OFFICIAL} lib/utils/body_model/seg_part_info.npy (MIT)",
    ),
)


@dataclass(frozen=True)
class FileStatus:
    relative_path: str
    description: str
    source: str
    found: bool
    path: Path


def model_file_status(model_dir: str | Path) -> list[FileStatus]:
    """Which of :data:`MODEL_FILES` exist in ``model_dir`` (the first existing alternative wins)."""
    model_dir = Path(model_dir)
    out = []
    for f in MODEL_FILES:
        hit = next((c for c in f.candidates() if (model_dir / c).is_file()), None)
        rel = hit or f.relative_path
        out.append(FileStatus(rel, f.description, f.source, hit is not None, model_dir / rel))
    return out
