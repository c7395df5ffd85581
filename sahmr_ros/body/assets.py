"""The official SA-HMR body files and the mesh network's template.

Files of a model directory (flat layout)::

    MODEL_DIR/smpl/SMPL_NEUTRAL.pkl          (or .npz, or basicModel_neutral_lbs_10_207_0_v1.0.0.pkl)
    MODEL_DIR/J_regressor_h36m_correct.npy   (17, 6890) H36M joint regressor
    MODEL_DIR/mesh_downsampling.npz          A, U, D, F (the key M is never read)
    MODEL_DIR/seg_part_info.npy              contact part id of every vertex

Frames: the SMPL model frame is y up, facing +z. The mesh network's template is that body turned by
pi about x, i.e. (x, y, z) -> (x, -y, -z): camera orientation (x right, y down, z forward), with its
H36M pelvis at the origin. Metres throughout.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse
import torch

from sahmr_ros import constants as C
from sahmr_ros.body.smpl import SMPL_SOURCE_HINT, find_smpl_file, load_body_model, read_npy, read_npz_member
from sahmr_ros.errors import InputError, ModelFilesMissingError

__all__ = [
    "BodyAssets",
    "OFFICIAL_FILE_HINTS",
    "h36m_joints",
    "h36m_pelvis",
    "joints14_from_vertices",
    "FileCheck",
    "load_body_assets",
    "load_downsampling_indices",
    "load_part_ids",
    "load_h36m_regressor",
    "load_mesh_downsampling",
    "load_seg_part_info",
    "model_file_status",
    "ModelFileStatus",
    "selection_indices",
    "validate_model_dir",
]

_OFFICIAL = "official SA-HMR repository https://github.com/zju3dv/SA-HMR (MIT licence), file"
OFFICIAL_FILE_HINTS = {
    C.H36M_REGRESSOR_FILENAME: f"{_OFFICIAL} lib/networks/pose/sahmr/data/J_regressor_h36m_correct.npy",
    C.MESH_DOWNSAMPLING_FILENAME: f"{_OFFICIAL} lib/networks/pose/sahmr/data/mesh_downsampling.npz",
    C.SEG_PART_INFO_FILENAME: f"{_OFFICIAL} lib/utils/body_model/seg_part_info.npy",
}
_MESH_KEYS = {"A": 3, "U": 2, "D": 2, "F": 3}  # key -> number of levels; "M" is deliberately absent


@dataclass(frozen=True)
class ModelFileStatus:
    """One required file of a model directory: where it is (or should be), what it is, its source."""

    path: Path
    description: str
    source: str
    found: bool


def model_file_status(model_dir: str | Path) -> list[ModelFileStatus]:
    """List the required files of ``model_dir`` (SMPL first), found or not; the one table of them."""
    model_dir = Path(model_dir)
    smpl = find_smpl_file(model_dir) if model_dir.is_dir() else None
    out = [ModelFileStatus(smpl or model_dir / C.SMPL_SUBDIR / C.SMPL_NEUTRAL_FILENAMES[0],
                           "SMPL neutral body model (6890 vertices)", SMPL_SOURCE_HINT, smpl is not None)]
    descriptions = {
        C.H36M_REGRESSOR_FILENAME: "H36M joint regressor (17 x 6890)",
        C.MESH_DOWNSAMPLING_FILENAME: "mesh down-sampling 6890 -> 1723 -> 431",
        C.SEG_PART_INFO_FILENAME: "contact part id of every vertex",
    }
    for name, hint in OFFICIAL_FILE_HINTS.items():
        out.append(ModelFileStatus(model_dir / name, descriptions[name], hint, (model_dir / name).is_file()))
    return out


def _require(path: Path) -> None:
    if not path.is_file():
        raise ModelFilesMissingError([(path, OFFICIAL_FILE_HINTS.get(path.name, "see models/README.md"))])


def load_h36m_regressor(path: str | Path) -> np.ndarray:
    """``J_regressor_h36m_correct.npy``: (17, 6890) float64, H36M joints = regressor @ vertices."""
    path = Path(path)
    _require(path)
    with open(path, "rb") as file:
        reg = read_npy(file, path)
    if reg.shape != (C.NUM_H36M_JOINTS, C.NUM_VERTICES) or not np.issubdtype(reg.dtype, np.floating):
        raise InputError(f"{path}: expected a float ({C.NUM_H36M_JOINTS}, {C.NUM_VERTICES}) array, "
                         f"got {reg.dtype} {reg.shape}")
    if not np.all(np.isfinite(reg)):
        raise InputError(f"{path}: contains non-finite values")
    return reg.astype(np.float64)


def load_mesh_downsampling(path: str | Path) -> dict[str, list]:
    """``mesh_downsampling.npz``, read key by key; the key ``M`` is never touched.

    Returns:
        ``A``: 3 scipy sparse adjacency matrices (6890^2, 1723^2, 431^2); ``U``: 2 up-sampling
        matrices (6890 x 1723, 1723 x 431); ``D``: 2 down-sampling selections (1723 x 6890,
        431 x 1723); ``F``: 3 face arrays (F_level, 3).
    """
    path = Path(path)
    _require(path)
    out = {}
    for key, levels in _MESH_KEYS.items():
        value = read_npz_member(path, key)
        items = list(value) if value.dtype.hasobject else [value]
        if len(items) != levels:
            raise InputError(f"{path}: key {key!r} has {len(items)} levels, expected {levels}")
        if key != "F" and not all(scipy.sparse.issparse(m) for m in items):
            raise InputError(f"{path}: key {key!r} must hold scipy sparse matrices, "
                             f"got {[type(m).__name__ for m in items]}")
        out[key] = items
    return out


def load_seg_part_info(path: str | Path) -> dict:
    """Load ``seg_part_info.npy``.

    Returns ``predefined_segparts`` (8 names), ``verts6890_pids`` (6890,) and ``verts431_pids`` (431,)
    as stored (float part ids 0..7).
    """
    path = Path(path)
    _require(path)
    with open(path, "rb") as file:
        value = read_npy(file, path)
    info = value.item() if value.dtype.hasobject and value.shape == () else value
    if not isinstance(info, dict):
        raise InputError(f"{path}: expected a pickled dict, got {type(info).__name__}")
    expected = {"predefined_segparts": (C.NUM_CONTACT_CLASSES,), "verts6890_pids": (C.NUM_VERTICES,),
                "verts431_pids": (C.NUM_VERTICES_COARSE,)}
    for key, shape in expected.items():
        if key not in info:
            raise InputError(f"{path}: missing key {key!r} (has {sorted(info)})")
        if np.shape(info[key]) != shape:
            raise InputError(f"{path}: key {key!r} has shape {np.shape(info[key])}, expected {shape}")
    return info


def selection_indices(matrix, name: str = "D") -> np.ndarray:
    """Row i of a pure selection matrix (one stored 1 per row) picks column ``out[i]``.

    Args:
        matrix: scipy sparse (N_coarse, N_fine).
        name: for error messages.

    Returns:
        (N_coarse,) int64 column indices.
    """
    m = scipy.sparse.csr_matrix(matrix)
    m.eliminate_zeros()
    per_row = np.diff(m.indptr)
    if not np.all(per_row == 1) or not np.allclose(m.data, 1.0, atol=1e-6):
        raise InputError(f"{name}: expected a pure selection (exactly one 1 per row), got rows with "
                         f"{sorted(set(per_row.tolist()))} entries and values in [{m.data.min()}, {m.data.max()}]")
    return m.indices.astype(np.int64)


def _part_ids(values, name: str, count: int) -> np.ndarray:
    values = np.asarray(values)
    ids = np.rint(values).astype(np.int64)
    if values.shape != (count,) or not np.allclose(values, ids) or ids.min() < 0 or ids.max() >= C.NUM_CONTACT_CLASSES:
        raise InputError(f"{name}: expected ({count},) integer part ids in 0..{C.NUM_CONTACT_CLASSES - 1}")
    return ids


@dataclass(frozen=True)
class BodyAssets:
    """What the networks need from the body model, as numpy arrays.

    Attributes:
        faces: (13776, 3) int64 triangles of the 6890-vertex mesh.
        template_vertices: (6890, 3) float32: neutral body, betas 0, global orient pi about x
            (camera orientation), H36M pelvis at the origin. Metres.
        template_joints14: (14, 3) float32 H36M joints (``H36M_J17_TO_J14``) of the posed body
            minus its H36M pelvis (the official ``(J v)[J14] - (J v)[pelvis]``).
        template_vertices431: (431, 3) float32 template through the two selections.
        index_1723: (1723,) int64 vertex ids into 6890 (``D[0]``).
        index_431: (431,) int64 ids into the 1723 (``D[1]``).
        j_regressor_h36m: (17, 6890) float32 H36M joint regressor.
        part_ids_6890: (6890,) int64 contact part per vertex, 0..7.
        part_ids_431: (431,) int64 contact part of the 431 vertices, 0..7.
        is_synthetic: True for the synthetic body (``SYNTHETIC_BODY.txt`` present), not SMPL.
        source: the body model file read.
    """

    faces: np.ndarray
    template_vertices: np.ndarray
    template_joints14: np.ndarray
    template_vertices431: np.ndarray
    index_1723: np.ndarray
    index_431: np.ndarray
    j_regressor_h36m: np.ndarray
    part_ids_6890: np.ndarray
    part_ids_431: np.ndarray
    is_synthetic: bool
    source: str


def load_body_assets(model_dir: str | Path, device: str | torch.device = "cpu") -> BodyAssets:
    """Load SMPL and the three official files from ``model_dir`` and build the template.

    Args:
        model_dir: directory with the flat layout of this module's docstring.
        device: where the body model runs while the template is computed.

    Raises:
        ModelFilesMissingError: listing every missing file at once, with where to get each.
        InputError: a file is unreadable or has the wrong content.
    """
    model_dir = Path(model_dir)
    status = model_file_status(model_dir)
    missing = [(f.path, f.source) for f in status if not f.found]
    if missing:
        raise ModelFilesMissingError(missing)
    smpl_path = status[0].path

    model = load_body_model(smpl_path, device=device, dtype=torch.float64)
    orient = torch.tensor([[C.TEMPLATE_GLOBAL_ORIENT_X, 0.0, 0.0]], dtype=torch.float64, device=model.v_template.device)
    with torch.no_grad():
        vertices = model(global_orient=orient).vertices[0].cpu().numpy()  # zero betas and body pose
    regressor = load_h36m_regressor(model_dir / C.H36M_REGRESSOR_FILENAME)
    # As the official: regress the joints of the posed body, then subtract its pelvis. The regressor's
    # rows do not sum to 1, so regressing the pelvis-relative vertices would differ (~1e-4 m for SMPL).
    joints17 = regressor @ vertices
    pelvis = joints17[C.H36M_PELVIS]
    template = vertices - pelvis
    joints14 = joints17[list(C.H36M_J17_TO_J14)] - pelvis

    index_1723, index_431 = load_downsampling_indices(model_dir / C.MESH_DOWNSAMPLING_FILENAME)
    part_ids_6890, part_ids_431 = load_part_ids(model_dir / C.SEG_PART_INFO_FILENAME)
    return BodyAssets(
        faces=model.faces_tensor.cpu().numpy().astype(np.int64),
        template_vertices=template.astype(np.float32),
        template_joints14=joints14.astype(np.float32),
        template_vertices431=template[index_1723][index_431].astype(np.float32),
        index_1723=index_1723,
        index_431=index_431,
        j_regressor_h36m=regressor.astype(np.float32),
        part_ids_6890=part_ids_6890,
        part_ids_431=part_ids_431,
        is_synthetic=(model_dir / C.SYNTHETIC_MARKER_FILENAME).is_file(),
        source=str(smpl_path),
    )


_LEVEL_SIZES = (C.NUM_VERTICES, C.NUM_VERTICES_MID, C.NUM_VERTICES_COARSE)


def load_downsampling_indices(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load the two vertex selections of ``mesh_downsampling.npz``, every level's shape checked.

    Returns:
        ``index_1723`` (1723,) ids into the 6890 vertices and ``index_431`` (431,) ids into the 1723.

    Raises:
        InputError: naming the key and level whose shape (A, U, D, F) or content is wrong.
    """
    path = Path(path)
    mesh = load_mesh_downsampling(path)
    n = _LEVEL_SIZES
    expected = {"A": [(k, k) for k in n], "U": [(n[0], n[1]), (n[1], n[2])], "D": [(n[1], n[0]), (n[2], n[1])]}
    for key, shapes in expected.items():
        for level, (matrix, shape) in enumerate(zip(mesh[key], shapes)):
            if matrix.shape != shape:
                raise InputError(f"{path}: {key}[{level}] has shape {matrix.shape}, expected {shape}")
    for level, (faces, count) in enumerate(zip(mesh["F"], n)):
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu" or faces.size == 0 \
                or faces.min() < 0 or faces.max() >= count:
            raise InputError(f"{path}: F[{level}] must be (F, 3) integer faces over {count} vertices, "
                             f"got {faces.dtype} {faces.shape}")
    return selection_indices(mesh["D"][0], f"{path}[D][0]"), selection_indices(mesh["D"][1], f"{path}[D][1]")


def load_part_ids(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Contact part id (0..7) of the 6890 vertices and of the 431 coarse vertices, from ``seg_part_info.npy``."""
    path = Path(path)
    seg = load_seg_part_info(path)
    return (_part_ids(seg["verts6890_pids"], f"{path}[verts6890_pids]", C.NUM_VERTICES),
            _part_ids(seg["verts431_pids"], f"{path}[verts431_pids]", C.NUM_VERTICES_COARSE))


@dataclass(frozen=True)
class FileCheck:
    """The verdict on one model file.

    :class:`ModelFileStatus` plus ``problem`` (None when valid) and ``detail`` (what was found:
    shapes, dtypes).
    """

    status: ModelFileStatus
    problem: str | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.status.found and self.problem is None


def _describe_smpl(path: Path) -> str:
    from sahmr_ros.body.smpl import load_smpl_arrays

    arrays = load_smpl_arrays(path)
    return (f"v_template {arrays['v_template'].dtype} {arrays['v_template'].shape}, f {arrays['f'].shape}, "
            f"shapedirs {arrays['shapedirs'].shape[2]} betas, posedirs {arrays['posedirs'].shape}")


def _describe_regressor(path: Path) -> str:
    reg = load_h36m_regressor(path)
    return f"{reg.shape} float, rows sum to {reg.sum(1).min():.3f}..{reg.sum(1).max():.3f}"


def _describe_downsampling(path: Path) -> str:
    i1723, i431 = load_downsampling_indices(path)
    return f"A/U/D/F levels 6890 -> {len(i1723)} -> {len(i431)} vertices, D are selections"


def _describe_parts(path: Path) -> str:
    ids6890, ids431 = load_part_ids(path)
    return f"part ids 0..{int(ids6890.max())} for 6890 and {len(ids431)} vertices"


def validate_model_dir(model_dir: str | Path) -> list[FileCheck]:
    """Check every required file of ``model_dir`` with the loaders the pipeline uses.

    Checks shapes, dtypes and content; one verdict per file, SMPL first; never raises for a bad file.
    """
    describe = {C.H36M_REGRESSOR_FILENAME: _describe_regressor, C.MESH_DOWNSAMPLING_FILENAME: _describe_downsampling,
                C.SEG_PART_INFO_FILENAME: _describe_parts}
    checks = []
    for status in model_file_status(model_dir):
        if not status.found:
            checks.append(FileCheck(status, "missing", ""))
            continue
        fn = describe.get(status.path.name, _describe_smpl)
        try:
            checks.append(FileCheck(status, None, fn(status.path)))
        except InputError as exc:
            checks.append(FileCheck(status, str(exc), ""))
    return checks


# --- torch helpers ----------------------------------------------------------------------------------
def _regressor_like(vertices: torch.Tensor, j_regressor, name: str = "vertices") -> torch.Tensor:
    if vertices.ndim != 3 or vertices.shape[1:] != (C.NUM_VERTICES, 3):
        raise InputError(f"{name}: expected shape (B, {C.NUM_VERTICES}, 3), got {tuple(vertices.shape)}")
    if isinstance(j_regressor, np.ndarray) and not j_regressor.flags.writeable:
        j_regressor = np.array(j_regressor)  # torch warns about sharing read-only memory
    reg = torch.as_tensor(j_regressor, dtype=vertices.dtype, device=vertices.device)
    if reg.shape != (C.NUM_H36M_JOINTS, C.NUM_VERTICES):
        raise InputError(f"j_regressor: expected shape ({C.NUM_H36M_JOINTS}, {C.NUM_VERTICES}), got {tuple(reg.shape)}")
    return reg


def h36m_joints(vertices: torch.Tensor, j_regressor) -> torch.Tensor:
    """H36M joints (B, 17, 3) of vertices (B, 6890, 3); ``j_regressor`` (17, 6890) array or tensor."""
    return torch.einsum("jv,bvc->bjc", _regressor_like(vertices, j_regressor), vertices)


def h36m_pelvis(vertices: torch.Tensor, j_regressor) -> torch.Tensor:
    """H36M pelvis (B, 3) (row ``H36M_PELVIS`` of the regressor) of vertices (B, 6890, 3)."""
    reg = _regressor_like(vertices, j_regressor)
    return torch.einsum("v,bvc->bc", reg[C.H36M_PELVIS], vertices)


def joints14_from_vertices(vertices: torch.Tensor, j_regressor) -> torch.Tensor:
    """Regress the 14 evaluation joints (B, 14, 3) (H36M rows ``H36M_J17_TO_J14``) of vertices (B, 6890, 3)."""
    reg = _regressor_like(vertices, j_regressor)[list(C.H36M_J17_TO_J14)]
    return torch.einsum("jv,bvc->bjc", reg, vertices)
