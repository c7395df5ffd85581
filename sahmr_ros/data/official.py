"""Reader of the official SA-HMR evaluation data (RICH test, PROX quantitative) as :class:`Sample` / :class:`Scene`.

The release (zju3dv/SA-HMR @ c57d244, README "Weights and data") ships pre-processed, licensed
evaluation data: ``RICH/sahmr_support`` and ``PROX/quantitative/sahmr_support``. This module reads
them in the layout the official code reads (``lib/datasets/rich/rich_pose_test.py``,
``lib/datasets/rich/rich_utils.py``, ``lib/datasets/prox/prox_pose_quant.py``,
``lib/train/trainers/pose/pose_trainer.py`` and ``tools/eval_results.py``), so that ``sahmr eval``
runs the paper's protocol on them. Pickled files are read with
:class:`~sahmr_ros.body.smpl.RestrictedUnpickler` (numpy and scipy sparse only).

RICH test (``<RICH>/sahmr_support``)::

    scene_info/<cap_name>/calibration/<cam_id>.xml      OpenCV XML: CameraMatrix (3x4 T_w2c), Intrinsics (3x3 K),
                                                        Distortion; cam_key = f"{cap_name}_{int(cam_id)}"
    scene_info/<cap_name>/<scan_name>_world.npy         pickled dict {"points": (N, 3), "pitch": (1,)}, world frame;
                                                        scene_key = f"{cap_name}_{scan_name}" (scan_name ends in
                                                        "camcoord")
    scene_info/<cap_name>/<scan_name>_mysdf.json        {"min": [3], "max": [3], "dim": D}
    scene_info/<cap_name>/<scan_name>_mysdf.npy         D^3 SDF values, reshaped (D, D, D) (SDFGrid layout)
    test_split/meta/test3116.npy                        object array of 3116 dicts: img_key, cam_key, cap_name,
                                                        scan_name, scene_key, contact_file, test_squared_bbx_lurb,
                                                        seq_name, frame_name, ...
    test_split/image/<img_key>.png                      the 224 x 224 crop of test_squared_bbx_lurb (original
                                                        4112 x 3008 pixels), RGB
    test_split/gt_smplx_mesh/<img_key>.ply              ground-truth SMPL-X mesh (10475 vertices), world frame
    test_split/contact/<contact_file after "test_contact/">   np.packbits of the 6890 vertex contacts

PROX quantitative (``<PROX>/quantitative/sahmr_support``)::

    meta/mosh_mesh_test.pkl                             list of dicts: img_key, img_file, body_file, scene_name
    img2gtbbx/mosh_mesh.pkl                             dict img_key -> person box [x1, y1, x2, y2] (flipped image)
    image/<img_file after "recordings/">                 1920 x 1080 colour image, mirrored (flipped before use)
    gt_mosh_mesh/<body_file after "mosh/">               ground-truth SMPL-X mesh (10475 vertices), camera frame
    vicon/calibration/Color.json                         {"f": [fx, fy], "c": [cx, cy], ...}
    vicon/calibration/cam2world_vicon.json               4 x 4 T_c2w
    vicon/vicon_voxel_world.npy                          pickled dict {"points", "pitch"}, world frame
    vicon/vicon.json, vicon/vicon_sdf.npy                SDF grid, as RICH's

Both need the SMPL-X -> SMPL(-H) deformation-transfer matrix the official evaluation applies to the
ground truth: ``smplx2smplh_deftrafo_setup.pkl`` (pickled dict, key ``mtx``, scipy sparse; the first
10475 columns map SMPL-X vertices to the 6890 SMPL-topology vertices), from the SMPL-X model-transfer
download (https://smpl-x.is.tue.mpg.de, licensed; official path ``models/model_transfer/``).

How the official data maps onto :class:`Sample`:

* RICH images are the released 224 x 224 crops. The sample's image is that crop, ``K`` the full
  intrinsics moved into the crop's pixels and the person box the centred square that sahmr_ros's
  crop (half size x ``CROP_SCALE``) widens back to the whole crop: the pipeline then sees exactly
  the official crop, K and box width (``Z = d f_x / w_bbox`` is unchanged). The original box and K are
  in ``extra``.
* PROX images are flipped left-right as the official loader does; K, box and the camera frame are the
  official ones for the flipped image.
* Lens distortion is ignored, as officially (the coefficients are kept in ``extra``).
* Ground-truth vertices = transfer matrix @ SMPL-X vertices, in both frames; root and 14 joints from
  the H36M regressor. RICH vertex contacts come from the contact files; PROX has none (ConFE = PenE).
  Scene-point contact labels (7 cm, SPEC section 6, PROX without hands) are computed when the part ids
  are given. No body parameters, visible fractions or scene meshes exist in the release.
"""

from __future__ import annotations

import json
import math
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse

from sahmr_ros import constants as C
from sahmr_ros.body.smpl import RestrictedUnpickler, read_npy, restricted_load
from sahmr_ros.data.sample import NO_DISTORTION, Person, Sample, Scene
from sahmr_ros.errors import InputError
from sahmr_ros.evaluation.metrics import CONTACT_GT_RADIUS_M, SDFGrid, contact_ground_truth_labels
from sahmr_ros.io import read_image

__all__ = [
    "NUM_SMPLX_VERTICES",
    "OfficialProxQuant",
    "OfficialRichTest",
    "SMPLX_TO_SMPL_FILENAME",
    "detect_official",
    "load_smplx_to_smpl",
    "open_official",
]

NUM_SMPLX_VERTICES = 10475
SMPLX_TO_SMPL_FILENAME = "smplx2smplh_deftrafo_setup.pkl"
_TRANSFER_HINT = ("SMPL-X -> SMPL(-H) transfer matrix: register at https://smpl-x.is.tue.mpg.de, download the "
                  "model-transfer data and pass model_transfer/smplx2smplh_deftrafo_setup.pkl")
_PROX_EXCLUDED_PARTS = (3, 4)  # PROX ground truth has no hand contacts (official get_w_pcSeg_all skip_hand)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class _TransferUnpickler(RestrictedUnpickler):
    """Restricted unpickler that also admits COO and LIL matrices (the transfer file's ``mtx``)."""

    def find_class(self, module: str, name: str) -> Any:
        if module.startswith("scipy.sparse") and name in ("coo_matrix", "lil_matrix", "csr_matrix", "csc_matrix"):
            return getattr(scipy.sparse, name)
        return super().find_class(module, name)


def _load_pickle(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: not found (official SA-HMR evaluation data)")
    with open(path, "rb") as f:
        return restricted_load(f, path, _TransferUnpickler)


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"{path}: not found (official SA-HMR evaluation data)")
    with open(path, "rb") as f:
        return read_npy(f, path)


def _load_json(path: Path) -> Any:
    if not path.is_file():
        raise InputError(f"{path}: not found (official SA-HMR evaluation data)")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None


def load_smplx_to_smpl(path: str | Path) -> scipy.sparse.csr_matrix:
    """Load the official SMPL-X -> SMPL(-H) vertex transfer as a sparse (6890, 10475) matrix.

    ``tools/eval_results.py``: ``mtx.todense()[:, :10475]`` of ``smplx2smplh_deftrafo_setup.pkl``;
    SMPL-topology vertices = matrix @ SMPL-X vertices.

    Raises:
        InputError: missing file (saying where to get it), no ``mtx`` key, wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: not found; {_TRANSFER_HINT}")
    data = _load_pickle(path)
    mtx = data.get("mtx") if isinstance(data, dict) else None
    if mtx is None:
        raise InputError(f"{path}: expected a pickled dict with key 'mtx'")
    mtx = scipy.sparse.csr_matrix(mtx) if scipy.sparse.issparse(mtx) else scipy.sparse.csr_matrix(np.asarray(mtx))
    if mtx.shape[0] != C.NUM_VERTICES or mtx.shape[1] < NUM_SMPLX_VERTICES:
        raise InputError(f"{path}: 'mtx' has shape {mtx.shape}, expected ({C.NUM_VERTICES}, >= {NUM_SMPLX_VERTICES})")
    return mtx[:, :NUM_SMPLX_VERTICES].astype(np.float64).tocsr()


def _read_mesh_vertices(path: Path) -> np.ndarray:
    """SMPL-X ground-truth mesh vertices (10475, 3) float64, as ``trimesh.load(process=False)``."""
    import trimesh

    if not path.is_file():
        raise InputError(f"{path}: ground-truth mesh not found")
    try:
        mesh = trimesh.load(path, process=False, force="mesh")
        verts = np.asarray(mesh.vertices, dtype=np.float64)
    except Exception as exc:  # trimesh raises many types on corrupt files
        raise InputError(f"{path}: not a readable mesh ({type(exc).__name__}: {exc})") from None
    if verts.shape != (NUM_SMPLX_VERTICES, 3) or not np.isfinite(verts).all():
        raise InputError(f"{path}: expected {NUM_SMPLX_VERTICES} finite SMPL-X vertices, got shape {verts.shape}")
    return verts


def _after(value: Any, marker: str, what: str) -> str:
    """Return what follows ``marker`` in an official absolute path (``s[s.find(marker) + len(marker):]``)."""
    s = str(value)
    i = s.find(marker)
    if i < 0:
        raise InputError(f"{what}: expected a path containing {marker!r}, got {s!r}")
    return s[i + len(marker):]


def _safe_key(value: str) -> str:
    return _UNSAFE.sub("-", str(value))[:200] or "x"


def _transform(T: np.ndarray, p: np.ndarray) -> np.ndarray:
    return p @ T[:3, :3].T + T[:3, 3]


def _official_scene(scene_id: str, cloud_file: Path, sdf_json: Path, sdf_npy: Path, version: str) -> Scene:
    """Scene from an official ``*_world.npy`` voxel cloud and its SDF files (SDF None when absent)."""
    value = _load_npy(cloud_file)
    data = value.item() if value.dtype.hasobject and value.shape == () else None
    if not isinstance(data, dict) or "points" not in data:
        raise InputError(f"{cloud_file}: expected a pickled dict with 'points' (N, 3) and 'pitch'")
    pitch = float(np.asarray(data.get("pitch", [C.SCENE_PITCH_M])).reshape(-1)[0])
    sdf = None
    if sdf_json.is_file() and sdf_npy.is_file():
        info = _load_json(sdf_json)
        try:
            dim = int(info["dim"])
            lo, hi = np.asarray(info["min"], np.float64), np.asarray(info["max"], np.float64)
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"{sdf_json}: expected keys min, max (3 numbers) and dim (int): {exc}") from None
        values = _load_npy(sdf_npy)
        if values.size != dim ** 3:
            raise InputError(f"{sdf_npy}: holds {values.size} values, {sdf_json} says dim {dim} ({dim ** 3})")
        sdf = SDFGrid(values.reshape(dim, dim, dim).astype(np.float32), lo, hi)
    return Scene(scene_id=scene_id, cloud=np.asarray(data["points"], np.float32), pitch=pitch, sdf=sdf,
                 generator_version=version,
                 extra={"cloud_file": cloud_file.name, "sdf_file": sdf_npy.name if sdf else None}).validate()


class _OfficialBase:
    """Shared by the RICH and PROX readers: ground truth, scene cache, the ShardIndex-like interface."""

    dataset = ""
    excluded_parts: tuple[int, ...] = ()

    def __init__(self, j_regressor: np.ndarray, smplx_to_smpl: scipy.sparse.spmatrix | str | Path,
                 part_ids: np.ndarray | None = None):
        reg = np.asarray(j_regressor, np.float64)
        if reg.shape != (C.NUM_H36M_JOINTS, C.NUM_VERTICES):
            raise InputError(f"j_regressor: expected shape ({C.NUM_H36M_JOINTS}, {C.NUM_VERTICES}), got {reg.shape}")
        self.j_regressor = reg
        self.transfer = (smplx_to_smpl.tocsr() if scipy.sparse.issparse(smplx_to_smpl)
                         else load_smplx_to_smpl(smplx_to_smpl))
        if self.transfer.shape != (C.NUM_VERTICES, NUM_SMPLX_VERTICES):
            raise InputError(f"smplx_to_smpl: expected shape ({C.NUM_VERTICES}, {NUM_SMPLX_VERTICES}), "
                             f"got {self.transfer.shape}")
        if part_ids is not None:
            part_ids = np.asarray(part_ids).astype(np.int64)
            if part_ids.shape != (C.NUM_VERTICES,):
                raise InputError(f"part_ids: expected shape ({C.NUM_VERTICES},), got {part_ids.shape}")
        self.part_ids = part_ids
        self._scenes: dict[str, Scene] = {}

    # --- interface shared with ShardIndex ------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._keys)

    def key(self, index: int) -> str:
        """Key of sample ``index`` (the official ``img_key``, characters outside [A-Za-z0-9_-] as '-')."""
        return self._keys[index]

    def __getitem__(self, index: int) -> Sample:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return self.sample(index % len(self))

    def scene(self, scene_id: str) -> Scene:
        """Load a scene once (cached)."""
        if scene_id not in self._scenes:
            self._scenes[scene_id] = self._load_scene(scene_id)
        return self._scenes[scene_id]

    # --- helpers ---------------------------------------------------------------------------------------
    def _person(self, verts_map: np.ndarray, T_w2c: np.ndarray, box: np.ndarray, contact: np.ndarray,
                category: str, scene: Scene) -> Person:
        verts_cam = _transform(T_w2c, verts_map)
        joints_map, joints_cam = self.j_regressor @ verts_map, self.j_regressor @ verts_cam
        idx14 = list(C.H36M_J17_TO_J14)
        indices, labels = np.zeros(0, np.int32), np.zeros(0, np.uint8)
        if self.part_ids is not None and len(scene.cloud):
            cloud = scene.cloud.astype(np.float64)
            near = np.flatnonzero(((cloud >= verts_map.min(0) - CONTACT_GT_RADIUS_M)
                                   & (cloud <= verts_map.max(0) + CONTACT_GT_RADIUS_M)).all(1))
            lab = contact_ground_truth_labels(cloud[near], verts_map, self.part_ids,
                                              exclude_parts=self.excluded_parts)
            indices, labels = near[lab > 0].astype(np.int32), lab[lab > 0].astype(np.uint8)
        return Person(box_xyxy=box, visible_fraction=math.nan, category=category,
                      root_camera=joints_cam[C.H36M_PELVIS], root_map=joints_map[C.H36M_PELVIS],
                      joints14_camera=joints_cam[idx14], joints14_map=joints_map[idx14],
                      vertices_camera=verts_cam.astype(np.float32), vertices_map=verts_map.astype(np.float32),
                      vertex_contact=contact, scene_contact_indices=indices, scene_contact_labels=labels)


def _xml_matrix(root: ET.Element, tag: str, path: Path, count: int | None) -> np.ndarray:
    node = root.find(f"./{tag}/data")
    if node is None or node.text is None:
        raise InputError(f"{path}: missing <{tag}><data>")
    try:
        values = np.array([float(t) for t in node.text.split()])
    except ValueError as exc:
        raise InputError(f"{path}: <{tag}> holds a non-number ({exc})") from None
    if count is not None and values.size != count:
        raise InputError(f"{path}: <{tag}> holds {values.size} numbers, expected {count}")
    return values


def _rich_cameras(scene_info: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list[float]]]:
    """cam_key -> (T_w2c (4, 4), K (3, 3), distortion) from ``scene_info/*/calibration/*.xml``."""
    cams = {}
    for path in sorted(scene_info.glob("*/calibration/*.xml")):
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as exc:
            raise InputError(f"{path}: not valid XML ({exc})") from None
        T = np.eye(4)
        T[:3] = _xml_matrix(root, "CameraMatrix", path, 12).reshape(3, 4)
        K = _xml_matrix(root, "Intrinsics", path, 9).reshape(3, 3)
        dist = _xml_matrix(root, "Distortion", path, None) if root.find("./Distortion/data") is not None else []
        try:
            cam_id = int(path.stem)
        except ValueError:
            raise InputError(f"{path}: expected a numeric camera id as the file name") from None
        cams[f"{path.parts[-3]}_{cam_id}"] = (T, K, [float(x) for x in dist])
    return cams


def _rich_category(meta: dict) -> str:
    """Activity of a RICH sequence name (``Gym_013_pushup1`` -> ``pushup``), else ``"rich"``."""
    tokens = [t for t in str(meta.get("seq_name", "")).split("_") if t and not t.isdigit()]
    if len(tokens) >= 2:
        name = re.sub(r"\d+$", "", tokens[-1])
        if name:
            return name
    return "rich"


class OfficialRichTest(_OfficialBase):
    """The official RICH test split (3116 frames) as samples, and its scenes.

    Args:
        root: the ``RICH`` directory holding ``sahmr_support``, or ``sahmr_support`` itself.
        j_regressor: (17, 6890) ``J_regressor_h36m_correct``.
        smplx_to_smpl: the transfer matrix, or the path of ``smplx2smplh_deftrafo_setup.pkl``.
        part_ids: (6890,) contact part of each vertex (``seg_part_info.npy``); scene-point contact
            labels are computed only when given.

    Raises:
        InputError: a missing or malformed file, naming it.
    """

    dataset = "rich"
    META = Path("test_split/meta/test3116.npy")

    def __init__(self, root: str | Path, j_regressor, smplx_to_smpl, part_ids=None):
        super().__init__(j_regressor, smplx_to_smpl, part_ids)
        root = Path(root)
        self.support = root / "sahmr_support" if (root / "sahmr_support").is_dir() else root
        self.scene_info = self.support / "scene_info"
        self.test_dir = self.support / "test_split"
        metas = _load_npy(self.support / self.META)
        self.metas = [m for m in np.asarray(metas, dtype=object).reshape(-1)]
        where = self.support / self.META
        for i, m in enumerate(self.metas):
            missing = [k for k in ("img_key", "cam_key", "contact_file", "test_squared_bbx_lurb") if
                       not isinstance(m, dict) or k not in m]
            if missing:
                raise InputError(f"{where}: entry {i} lacks {missing}")
        self.cameras = _rich_cameras(self.scene_info)
        # scene_key -> (cloud file, scan_name), as the official NetworkWrapper.setup_rich derives it
        self._scene_files = {}
        for f in sorted(self.scene_info.glob("*/*_world.npy")):
            scan = f.stem[: f.stem.find("camcoord") + len("camcoord")] if "camcoord" in f.stem else f.stem[:-6]
            self._scene_files[f"{f.parts[-2]}_{scan}"] = (f, scan)
        self._keys = [_safe_key(m["img_key"]) for m in self.metas]
        if len(set(self._keys)) != len(self._keys):
            raise InputError(f"{where}: img_key values are not unique")

    @property
    def scene_ids(self) -> list[str]:
        """Scene keys found under ``scene_info``."""
        return sorted(self._scene_files)

    def _load_scene(self, scene_id: str) -> Scene:
        if scene_id not in self._scene_files:
            raise InputError(f"{self.scene_info}: no <cap_name>/<scan_name>_world.npy for scene {scene_id!r} "
                             f"(found {self.scene_ids})")
        cloud_file, scan = self._scene_files[scene_id]
        folder = cloud_file.parent
        return _official_scene(_safe_key(scene_id), cloud_file, folder / f"{scan}_mysdf.json",
                               folder / f"{scan}_mysdf.npy", "official-rich")

    def sample(self, index: int) -> Sample:
        """Read sample ``index``: the 224 crop, crop intrinsics, ground truth (see the module docstring)."""
        meta = self.metas[index]
        where = f"{self.support / self.META}[{index}]"
        img_key = str(meta["img_key"])
        if meta["cam_key"] not in self.cameras:
            raise InputError(f"{where}: cam_key {meta['cam_key']!r} has no scene_info/*/calibration/*.xml")
        T_w2c, K_full, dist = self.cameras[meta["cam_key"]]
        scene_id = str(meta.get("scene_key") or f"{meta.get('cap_name')}_{meta.get('scan_name')}")
        scene = self.scene(scene_id)
        image = read_image(self.test_dir / "image" / f"{img_key}.png")
        lurb = np.asarray(meta["test_squared_bbx_lurb"], np.float64).reshape(-1)
        if lurb.shape != (4,) or not (lurb[2] > lurb[0] and lurb[3] > lurb[1]):
            raise InputError(f"{where}: test_squared_bbx_lurb must be [l, u, r, b] with r > l and b > u, got {lurb}")
        h, w = image.shape[:2]
        # crop pixel = s * (original pixel - corner): (l, u) -> (0, 0), (r, b) -> (w - 1, h - 1)
        sx, sy = (w - 1) / (lurb[2] - lurb[0]), (h - 1) / (lurb[3] - lurb[1])
        K = np.array([[sx * K_full[0, 0], sx * K_full[0, 1], sx * (K_full[0, 2] - lurb[0])],
                      [0.0, sy * K_full[1, 1], sy * (K_full[1, 2] - lurb[1])], [0.0, 0.0, 1.0]])
        centre = np.array([(w - 1) / 2, (h - 1) / 2])
        half = np.array([(w - 1) / 2, (h - 1) / 2]) / C.CROP_SCALE
        box = np.concatenate([centre - half, centre + half])
        contact_name = _after(meta["contact_file"], "test_contact/", f"{where}.contact_file")
        contact_file = self.test_dir / "contact" / contact_name
        packed = _load_npy(contact_file)
        contact = np.unpackbits(packed.astype(np.uint8).reshape(-1), count=C.NUM_VERTICES).astype(bool)
        if contact.shape != (C.NUM_VERTICES,):
            raise InputError(f"{contact_file}: holds {packed.size} bytes, expected {math.ceil(C.NUM_VERTICES / 8)}")
        verts_map = self.transfer @ _read_mesh_vertices(self.test_dir / "gt_smplx_mesh" / f"{img_key}.ply")
        person = self._person(verts_map, T_w2c, box, contact, _rich_category(meta), scene)
        frame = str(meta.get("frame_name", "0"))
        return Sample(
            key=self._keys[index], image=image, K=K, T_map_camera=np.linalg.inv(T_w2c), scene_id=scene.scene_id,
            persons=[person], distortion_model=NO_DISTORTION, sequence_id=_safe_key(meta.get("seq_name", "")),
            frame_index=int(frame) if frame.isdigit() else 0, split="test",
            extra={"dataset": "rich", "img_key": img_key, "cam_key": str(meta["cam_key"]),
                   "official_bbx_lurb": lurb.tolist(), "K_full": K_full.tolist(),
                   "official_distortion_ignored": dist, "has_vertex_contact": True}).validate()


class OfficialProxQuant(_OfficialBase):
    """The official PROX quantitative test set (``vicon`` scene) as samples, and its scene.

    Args:
        root: the ``PROX/quantitative`` directory holding ``sahmr_support``, or ``sahmr_support`` itself.
        j_regressor, smplx_to_smpl, part_ids: as :class:`OfficialRichTest`.

    Raises:
        InputError: a missing or malformed file, naming it.
    """

    dataset = "prox"
    excluded_parts = _PROX_EXCLUDED_PARTS
    META = Path("meta/mosh_mesh_test.pkl")
    BOXES = Path("img2gtbbx/mosh_mesh.pkl")

    def __init__(self, root: str | Path, j_regressor, smplx_to_smpl, part_ids=None):
        super().__init__(j_regressor, smplx_to_smpl, part_ids)
        root = Path(root)
        self.support = root / "sahmr_support" if (root / "sahmr_support").is_dir() else root
        metas = _load_pickle(self.support / self.META)
        if not isinstance(metas, (list, tuple)) or not all(isinstance(m, dict) for m in metas):
            raise InputError(f"{self.support / self.META}: expected a pickled list of dicts")
        self.metas = list(metas)
        for i, m in enumerate(self.metas):
            missing = [k for k in ("img_key", "img_file", "body_file") if k not in m]
            if missing:
                raise InputError(f"{self.support / self.META}: entry {i} lacks {missing}")
        self.boxes = _load_pickle(self.support / self.BOXES)
        if not isinstance(self.boxes, dict):
            raise InputError(f"{self.support / self.BOXES}: expected a pickled dict img_key -> box")
        calib = self.support / "vicon" / "calibration"
        color = _load_json(calib / "Color.json")
        try:
            self.K = np.array([[color["f"][0], 0.0, color["c"][0]], [0.0, color["f"][1], color["c"][1]],
                               [0.0, 0.0, 1.0]], np.float64)
        except (KeyError, IndexError, TypeError) as exc:
            raise InputError(f"{calib / 'Color.json'}: expected 'f' [fx, fy] and 'c' [cx, cy] ({exc})") from None
        self.distortion = [float(x) for x in np.asarray(color.get("k", []), np.float64).reshape(-1)]
        self.T_c2w = np.asarray(_load_json(calib / "cam2world_vicon.json"), np.float64)
        if self.T_c2w.shape != (4, 4):
            raise InputError(f"{calib / 'cam2world_vicon.json'}: expected a 4 x 4 matrix, got {self.T_c2w.shape}")
        self._keys = [_safe_key(m["img_key"]) for m in self.metas]
        if len(set(self._keys)) != len(self._keys):
            raise InputError(f"{self.support / self.META}: img_key values are not unique")

    @property
    def scene_ids(self) -> list[str]:
        """The one scene, ``vicon``."""
        return ["vicon"]

    def _load_scene(self, scene_id: str) -> Scene:
        folder = self.support / scene_id
        return _official_scene(_safe_key(scene_id), folder / f"{scene_id}_voxel_world.npy",
                               folder / f"{scene_id}.json", folder / f"{scene_id}_sdf.npy", "official-prox")

    def sample(self, index: int) -> Sample:
        """Read sample ``index``: the flipped full image, official K, box, pose and ground truth."""
        meta = self.metas[index]
        where = f"{self.support / self.META}[{index}]"
        img_key = str(meta["img_key"])
        if img_key not in self.boxes:
            raise InputError(f"{self.support / self.BOXES}: no box for img_key {img_key!r}")
        box = np.asarray(self.boxes[img_key], np.float64).reshape(-1)
        scene = self.scene(str(meta.get("scene_name", "vicon")))
        image = read_image(self.support / "image" / _after(meta["img_file"], "recordings/", f"{where}.img_file"))
        image = np.ascontiguousarray(image[:, ::-1])  # the official loader mirrors PROX images (cv2.flip(img, 1))
        body = self.support / "gt_mosh_mesh" / _after(meta["body_file"], "mosh/", f"{where}.body_file")
        verts_map = _transform(self.T_c2w, self.transfer @ _read_mesh_vertices(body))
        person = self._person(verts_map, np.linalg.inv(self.T_c2w), box, np.zeros(C.NUM_VERTICES, bool), "prox",
                              scene)
        return Sample(
            key=self._keys[index], image=image, K=self.K, T_map_camera=self.T_c2w, scene_id=scene.scene_id,
            persons=[person], distortion_model=NO_DISTORTION, split="test",
            extra={"dataset": "prox", "img_key": img_key, "image_flipped": True,
                   "official_distortion_ignored": self.distortion, "has_vertex_contact": False}).validate()


def detect_official(path: str | Path) -> str | None:
    """Say which official data set a directory holds: ``"rich"``, ``"prox"`` or None."""
    path = Path(path)
    for support in (path / "sahmr_support", path):
        if (support / OfficialRichTest.META).is_file():
            return "rich"
        if (support / OfficialProxQuant.META).is_file():
            return "prox"
    return None


def open_official(path: str | Path, model_dir: str | Path, smplx_to_smpl: str | Path | None = None,
                  contact_labels: bool = True) -> OfficialRichTest | OfficialProxQuant:
    """Open official RICH / PROX evaluation data with the files of a sahmr_ros model directory.

    Args:
        path: ``RICH``, ``PROX/quantitative`` or their ``sahmr_support`` directory.
        model_dir: holds ``J_regressor_h36m_correct.npy`` and ``seg_part_info.npy`` (models/README.md).
        smplx_to_smpl: the transfer file; default ``<model_dir>/model_transfer/smplx2smplh_deftrafo_setup.pkl``
            (the official ``models/model_transfer/`` path).
        contact_labels: compute scene-point contact labels (needs ``seg_part_info.npy``).

    Raises:
        InputError: not official data, or missing files (named).
    """
    from sahmr_ros.body.assets import load_h36m_regressor, load_part_ids

    kind = detect_official(path)
    if kind is None:
        raise InputError(f"{path}: no official SA-HMR evaluation data here (expected "
                         f"sahmr_support/{OfficialRichTest.META} or sahmr_support/{OfficialProxQuant.META})")
    model_dir = Path(model_dir)
    reg = load_h36m_regressor(model_dir / C.H36M_REGRESSOR_FILENAME)
    parts = load_part_ids(model_dir / C.SEG_PART_INFO_FILENAME)[0] if contact_labels else None
    transfer = Path(smplx_to_smpl) if smplx_to_smpl else model_dir / "model_transfer" / SMPLX_TO_SMPL_FILENAME
    cls = OfficialRichTest if kind == "rich" else OfficialProxQuant
    return cls(path, reg, transfer, parts)
