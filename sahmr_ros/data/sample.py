"""One sample (one camera image with its people) and one scene: the in-memory and on-disk layout.

This is the one description of what a data set of sahmr_ros holds, RICH / PROX-like. The synthetic
generator (``sahmr synth``) writes it, :mod:`sahmr_ros.data.shards` stores it, the datasets of
:mod:`sahmr_ros.data.dataset` and the official-data reader (:mod:`sahmr_ros.data.official`) yield it,
and ``sahmr eval`` consumes it.

Frames and units:

* camera: optical frame (x right, y down, z forward); map: the scene's world frame (REP-103, z up for
  the synthetic rooms; the official RICH / PROX world frames as released). ``T_map_camera`` maps
  camera points into the map: ``p_map = R p_cam + t``.
* metres everywhere; pixels for boxes, ``K`` and image sizes (pixel centres at integer coordinates).
* the H36M root (pelvis) is row 0 of ``J_regressor_h36m_correct`` applied to the vertices; the 14
  joints are its rows ``constants.H36M_J17_TO_J14``.

Flat array layout (:meth:`Sample.to_arrays`), ``P`` persons, ``S`` scene-contact entries in all:

=========================  ===================  =========  ===============================================
key                        shape                dtype      meaning
=========================  ===================  =========  ===============================================
image                      (H, W, 3)            uint8      RGB
K                          (3, 3)               float64    intrinsics, pixels
distortion_coeffs          (n,)                 float64    coefficients of ``distortion_model`` (ROS order)
T_map_camera               (4, 4)               float64    camera pose in the map
boxes_xyxy                 (P, 4)               float64    box of the visible mask, pixels
visible_fraction           (P,)                 float64    visible share of the body's pixels (NaN: unknown)
root_camera, root_map      (P, 3)               float64    H36M pelvis, metres
joints14_camera, _map      (P, 14, 3)           float64    H36M evaluation joints, metres
vertices_camera, _map      (P, 6890, 3)         float32    SMPL-topology mesh, metres
betas                      (P, 10)              float32    shape (NaN rows: unknown, see ``has_body_params``)
global_orient              (P, 3)               float32    axis-angle, body-model frame -> map
body_pose                  (P, 69)              float32    axis-angle of the 23 body joints
transl                     (P, 3)               float32    body-model translation, metres, map frame
vertex_contact             (P, 6890)            bool       vertex touches the scene
scene_contact_indices      (S,)                 int32      indices into the scene cloud
scene_contact_labels       (S,)                 uint8      their contact labels 1..7 (SPEC section 6)
scene_contact_offsets      (P + 1,)             int64      person p owns entries offsets[p]:offsets[p+1]
=========================  ===================  =========  ===============================================

Everything else (key, scene id, sequence, seed, split, camera model, per-person category / flags /
track id, free ``extra`` metadata) is the JSON of :meth:`Sample.metadata`.

A scene (:class:`Scene`) is stored once and referenced by ``scene_id``: the map cloud, optionally the
room mesh and the SDF grid (the layout of :class:`sahmr_ros.evaluation.metrics.SDFGrid`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.evaluation.metrics import SDFGrid
from sahmr_ros.io import DISTORTION_MODELS

__all__ = [
    "NO_DISTORTION",
    "Person",
    "SAMPLE_FORMAT_VERSION",
    "Sample",
    "Scene",
    "check_key",
]

SAMPLE_FORMAT_VERSION = 1
NO_DISTORTION = "none"
_KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,200}$")
_BODY_SHAPES = {"betas": (C.NUM_BETAS,), "global_orient": (3,), "body_pose": (3 * (C.NUM_SMPL_JOINTS - 1),),
                "transl": (3,)}


def check_key(key: str, name: str = "key") -> str:
    """Check a sample or scene key: 1-200 characters of ``[A-Za-z0-9_-]``.

    Keys name files (``<key>.png`` in a shard, ``scenes/<id>.npz``); webdataset splits a file name at
    its first dot, so keys hold no dots, slashes or spaces.
    """
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise InputError(f"{name}: expected 1-200 characters of [A-Za-z0-9_-], got {key!r}")
    return key


def _array(value: Any, name: str, shape: tuple, dtype: Any, finite: bool = True) -> np.ndarray:
    """Check shape (None = any size) and kind, return a C-contiguous copy-free array of ``dtype``."""
    try:
        a = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name}: expected an array, got {type(value).__name__}") from exc
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        want = "(" + ", ".join("n" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise InputError(f"{name}: expected shape {want}, got {a.shape}")
    want_kind = np.dtype(dtype).kind
    ok = (a.dtype.kind == want_kind or (want_kind == "f" and a.dtype.kind in "iu")
          or (want_kind in "iu" and a.dtype.kind in "iu"))
    if not ok:
        raise InputError(f"{name}: expected {np.dtype(dtype)} values, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=dtype)
    if finite and a.dtype.kind == "f" and not np.isfinite(a).all():
        raise InputError(f"{name}: contains NaN or inf")
    return a


@dataclass(eq=False)
class Person:
    """Ground truth of one person in one image.

    Attributes:
        box_xyxy: (4,) float64 ``[x1, y1, x2, y2]`` pixels, the box of the visible mask.
        visible_fraction: visible share of the body's silhouette inside the image, in [0, 1] (occlusion by
            the scene and other people; truncation by the image border is the ``"truncated"`` flag);
            NaN when unknown (official data).
        category: pose name (``"sitting_chair"``, ...) or, for official data, the activity.
        root_camera, root_map: (3,) float64 H36M pelvis, metres, camera / map frame.
        joints14_camera, joints14_map: (14, 3) float64 H36M evaluation joints, metres.
        vertices_camera, vertices_map: (6890, 3) float32 mesh vertices, metres.
        vertex_contact: (6890,) bool, the vertex touches the scene.
        scene_contact_indices: (k,) int32 indices into the scene cloud (:attr:`Scene.cloud`) of the
            points within 7 cm of a part vertex (SPEC section 6), ascending.
        scene_contact_labels: (k,) uint8 their labels 1..7 (``constants.CONTACT_PART_NAMES``).
        betas: (10,) float32 shape, or None when unknown (official data: meshes only).
        global_orient: (3,) float32 axis-angle (body-model frame -> map), or None.
        body_pose: (69,) float32 axis-angle of the 23 body joints, or None.
        transl: (3,) float32 body-model translation (metres, map frame), or None.
        flags: strings such as ``"truncated"``, ``"occluded"``.
        track_id: identity of the person across a sequence's frames; -1 when none.
    """

    box_xyxy: np.ndarray
    visible_fraction: float
    category: str
    root_camera: np.ndarray
    root_map: np.ndarray
    joints14_camera: np.ndarray
    joints14_map: np.ndarray
    vertices_camera: np.ndarray
    vertices_map: np.ndarray
    vertex_contact: np.ndarray
    scene_contact_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    scene_contact_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    betas: np.ndarray | None = None
    global_orient: np.ndarray | None = None
    body_pose: np.ndarray | None = None
    transl: np.ndarray | None = None
    flags: tuple[str, ...] = ()
    track_id: int = -1

    @property
    def has_body_params(self) -> bool:
        """True when betas, global_orient, body_pose and transl are all known."""
        return self.betas is not None

    def validate(self, name: str = "person") -> "Person":
        """Check every field (shape, dtype, finiteness, ranges) and normalise dtypes in place.

        Raises:
            InputError: naming the field, e.g. ``sample[key].persons[1].vertices_map: expected shape ...``.
        """
        f = f"{name}."
        self.box_xyxy = _array(self.box_xyxy, f + "box_xyxy", (4,), np.float64)
        if not (self.box_xyxy[2] > self.box_xyxy[0] and self.box_xyxy[3] > self.box_xyxy[1]):
            raise InputError(f"{f}box_xyxy: expected x2 > x1 and y2 > y1, got {self.box_xyxy.tolist()}")
        vf = float(self.visible_fraction)
        if not (math.isnan(vf) or 0.0 <= vf <= 1.0):
            raise InputError(f"{f}visible_fraction: expected a value in [0, 1] or NaN, got {vf}")
        self.visible_fraction = vf
        if not isinstance(self.category, str) or not self.category:
            raise InputError(f"{f}category: expected a non-empty string, got {self.category!r}")
        for k in ("root_camera", "root_map"):
            setattr(self, k, _array(getattr(self, k), f + k, (3,), np.float64))
        for k in ("joints14_camera", "joints14_map"):
            setattr(self, k, _array(getattr(self, k), f + k, (C.NUM_JOINTS14, 3), np.float64))
        for k in ("vertices_camera", "vertices_map"):
            setattr(self, k, _array(getattr(self, k), f + k, (C.NUM_VERTICES, 3), np.float32))
        self.vertex_contact = _array(self.vertex_contact, f + "vertex_contact", (C.NUM_VERTICES,), np.bool_)
        idx = _array(self.scene_contact_indices, f + "scene_contact_indices", (None,), np.int64)
        lab = _array(self.scene_contact_labels, f + "scene_contact_labels", (None,), np.int64)
        if len(idx) != len(lab):
            raise InputError(f"{f}scene_contact_indices and scene_contact_labels: expected the same length, "
                             f"got {len(idx)} and {len(lab)}")
        if len(idx) and (idx.min() < 0 or idx.max() > np.iinfo(np.int32).max or (np.diff(idx) <= 0).any()):
            raise InputError(f"{f}scene_contact_indices: expected ascending unique indices in 0..2^31-1")
        if len(lab) and (lab.min() < 1 or lab.max() >= C.NUM_CONTACT_CLASSES):
            raise InputError(f"{f}scene_contact_labels: expected labels 1..{C.NUM_CONTACT_CLASSES - 1}, "
                             f"got {lab.min()}..{lab.max()}")
        self.scene_contact_indices, self.scene_contact_labels = idx.astype(np.int32), lab.astype(np.uint8)
        given = [k for k in _BODY_SHAPES if getattr(self, k) is not None]
        if given and len(given) != len(_BODY_SHAPES):
            missing = sorted(set(_BODY_SHAPES) - set(given))
            raise InputError(f"{f}{missing[0]}: body parameters must be all given or all None "
                             f"(given: {', '.join(given)})")
        for k in given:
            setattr(self, k, _array(getattr(self, k), f + k, _BODY_SHAPES[k], np.float32))
        if isinstance(self.flags, str) or not all(isinstance(x, str) for x in self.flags):
            raise InputError(f"{f}flags: expected a sequence of strings, got {self.flags!r}")
        self.flags = tuple(self.flags)
        self.track_id = int(self.track_id)
        return self


@dataclass(eq=False)
class Sample:
    """One camera image with its people and ground truth.

    Attributes:
        key: unique name of the sample in its data set (:func:`check_key`).
        image: (H, W, 3) uint8 RGB, as the camera delivered it (distorted when ``distortion_model``
            is not ``"none"``).
        K: (3, 3) float64 intrinsics, pixels.
        T_map_camera: (4, 4) float64 camera pose in the map (camera optical frame -> map).
        scene_id: the :class:`Scene` the camera looks at.
        persons: ground truth of each person (may be empty).
        distortion_model: ``"none"`` or a key of ``sahmr_ros.io.DISTORTION_MODELS``.
        distortion_coeffs: (n,) float64 coefficients in that model's ROS order; empty for ``"none"``.
        sequence_id: sequence the frame belongs to; ``""`` for a single frame.
        frame_index: index of the frame in its sequence (0 for single frames).
        seed: random seed the generator drew this sample with (0 for recorded data).
        split: ``"train"``, ``"val"``, ``"test"`` (or ``""``).
        extra: JSON-serialisable metadata (official file names, renderer settings, ...).
    """

    key: str
    image: np.ndarray
    K: np.ndarray
    T_map_camera: np.ndarray
    scene_id: str
    persons: list[Person] = field(default_factory=list)
    distortion_model: str = NO_DISTORTION
    distortion_coeffs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    sequence_id: str = ""
    frame_index: int = 0
    seed: int = 0
    split: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def image_size(self) -> tuple[int, int]:
        """(width, height) of the image, pixels."""
        return int(self.image.shape[1]), int(self.image.shape[0])

    def validate(self) -> "Sample":
        """Check every field and normalise dtypes in place; returns self.

        Raises:
            InputError: naming the field (``sample[<key>].<field>``).
        """
        check_key(self.key, "sample.key")
        f = f"sample[{self.key}]."
        image = np.asarray(self.image)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 2:
            raise InputError(f"{f}image: expected an (H, W, 3) uint8 RGB image, got shape {image.shape} "
                             f"dtype {image.dtype}")
        self.image = np.ascontiguousarray(image)
        self.K = _array(self.K, f + "K", (3, 3), np.float64)
        if not (self.K[0, 0] > 0 and self.K[1, 1] > 0 and self.K[2, 2] == 1):
            raise InputError(f"{f}K: expected fx, fy > 0 and K[2, 2] = 1, got {self.K.tolist()}")
        self.T_map_camera = _array(self.T_map_camera, f + "T_map_camera", (4, 4), np.float64)
        R = self.T_map_camera[:3, :3]
        if (not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0
                or not np.allclose(self.T_map_camera[3], (0, 0, 0, 1))):
            raise InputError(f"{f}T_map_camera: expected a rigid transform (rotation + translation, last row "
                             f"0 0 0 1), got {self.T_map_camera.tolist()}")
        check_key(self.scene_id, f + "scene_id")
        model = self.distortion_model
        coeffs = _array(self.distortion_coeffs, f + "distortion_coeffs", (None,), np.float64)
        want = 0 if model == NO_DISTORTION else len(DISTORTION_MODELS.get(model, ())) or None
        if want is None:
            raise InputError(f"{f}distortion_model: expected 'none' or one of {sorted(DISTORTION_MODELS)}, "
                             f"got {model!r}")
        if len(coeffs) != want:
            raise InputError(f"{f}distortion_coeffs: model {model!r} takes {want} coefficients, got {len(coeffs)}")
        self.distortion_coeffs = coeffs
        for name in ("sequence_id", "split"):
            if not isinstance(getattr(self, name), str):
                raise InputError(f"{f}{name}: expected a string, got {getattr(self, name)!r}")
        self.frame_index, self.seed = int(self.frame_index), int(self.seed)
        if self.frame_index < 0 or self.seed < 0:
            raise InputError(f"{f}frame_index and seed: expected >= 0, got {self.frame_index} and {self.seed}")
        try:
            json.dumps(self.extra, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{f}extra: must be JSON-serialisable without NaN ({exc})") from None
        self.persons = [p.validate(f"{f}persons[{i}]") for i, p in enumerate(self.persons)]
        return self

    # --- flat layout ----------------------------------------------------------------------------------
    def metadata(self) -> dict:
        """Return the JSON-serialisable metadata: all but the arrays (see the module docstring)."""
        return {
            "format_version": SAMPLE_FORMAT_VERSION,
            "key": self.key,
            "scene_id": self.scene_id,
            "image_size": list(self.image_size),
            "distortion_model": self.distortion_model,
            "sequence_id": self.sequence_id,
            "frame_index": self.frame_index,
            "seed": self.seed,
            "split": self.split,
            "persons": [{"category": p.category, "flags": list(p.flags), "track_id": p.track_id,
                         "has_body_params": p.has_body_params} for p in self.persons],
            "extra": self.extra,
        }

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Flat dict of arrays (table in the module docstring), persons stacked along the first axis."""
        self.validate()
        P = len(self.persons)
        out: dict[str, np.ndarray] = {"image": self.image, "K": self.K, "distortion_coeffs": self.distortion_coeffs,
                                      "T_map_camera": self.T_map_camera}

        def stack(name, shape, dtype, fill=None):
            rows = [getattr(p, name) if getattr(p, name) is not None else np.full(shape, fill, dtype)
                    for p in self.persons]
            return np.stack(rows).astype(dtype) if rows else np.zeros((0,) + shape, dtype)

        out["boxes_xyxy"] = stack("box_xyxy", (4,), np.float64)
        out["visible_fraction"] = np.array([p.visible_fraction for p in self.persons], np.float64)
        for frame in ("camera", "map"):
            out[f"root_{frame}"] = stack(f"root_{frame}", (3,), np.float64)
            out[f"joints14_{frame}"] = stack(f"joints14_{frame}", (C.NUM_JOINTS14, 3), np.float64)
            out[f"vertices_{frame}"] = stack(f"vertices_{frame}", (C.NUM_VERTICES, 3), np.float32)
        for name, shape in _BODY_SHAPES.items():
            out[name] = stack(name, shape, np.float32, fill=np.nan)
        out["vertex_contact"] = stack("vertex_contact", (C.NUM_VERTICES,), np.bool_)
        counts = [len(p.scene_contact_indices) for p in self.persons]
        out["scene_contact_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        out["scene_contact_indices"] = (np.concatenate([p.scene_contact_indices for p in self.persons])
                                        if P else np.zeros(0)).astype(np.int32)
        out["scene_contact_labels"] = (np.concatenate([p.scene_contact_labels for p in self.persons])
                                       if P else np.zeros(0)).astype(np.uint8)
        assert out["visible_fraction"].shape == (P,)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], metadata: dict, where: str = "sample") -> "Sample":
        """Inverse of :meth:`to_arrays` + :meth:`metadata`; validates the result.

        Args:
            arrays: the flat dict of arrays.
            metadata: the JSON dict.
            where: named in errors (a file name).

        Raises:
            InputError: a missing key, a count that disagrees, or any field :meth:`validate` refuses.
        """
        def get(name):
            if name not in arrays:
                raise InputError(f"{where}: missing array {name!r} (has {sorted(arrays)})")
            return arrays[name]

        def meta(name, kind):
            if name not in metadata or not isinstance(metadata[name], kind):
                raise InputError(f"{where}: metadata field {name!r} missing or not {kind}")
            return metadata[name]

        version = meta("format_version", int)
        if version != SAMPLE_FORMAT_VERSION:
            raise InputError(f"{where}: sample format version {version}, this sahmr_ros reads "
                             f"{SAMPLE_FORMAT_VERSION}; regenerate the data or update sahmr_ros")
        people = meta("persons", list)
        P = len(people)
        offsets = np.asarray(get("scene_contact_offsets"))
        if offsets.shape != (P + 1,):
            raise InputError(f"{where}: scene_contact_offsets has shape {offsets.shape}, expected ({P + 1},) "
                             f"for {P} persons")
        persons = []
        for i, pm in enumerate(people):
            def row(name):
                a = np.asarray(get(name))
                if a.ndim < 1 or a.shape[0] != P:
                    raise InputError(f"{where}: array {name!r} has {a.shape[0] if a.ndim else 0} rows, "
                                     f"expected {P} (one per person)")
                return a[i]
            body = {k: row(k) if pm.get("has_body_params") else None for k in _BODY_SHAPES}
            lo, hi = int(offsets[i]), int(offsets[i + 1])
            persons.append(Person(
                box_xyxy=row("boxes_xyxy"), visible_fraction=float(row("visible_fraction")),
                category=pm.get("category"), root_camera=row("root_camera"), root_map=row("root_map"),
                joints14_camera=row("joints14_camera"), joints14_map=row("joints14_map"),
                vertices_camera=row("vertices_camera"), vertices_map=row("vertices_map"),
                vertex_contact=row("vertex_contact"),
                scene_contact_indices=get("scene_contact_indices")[lo:hi],
                scene_contact_labels=get("scene_contact_labels")[lo:hi],
                flags=tuple(pm.get("flags", ())), track_id=pm.get("track_id", -1), **body))
        sample = cls(
            key=meta("key", str), image=get("image"), K=get("K"), T_map_camera=get("T_map_camera"),
            scene_id=meta("scene_id", str), persons=persons, distortion_model=meta("distortion_model", str),
            distortion_coeffs=get("distortion_coeffs"), sequence_id=meta("sequence_id", str),
            frame_index=meta("frame_index", int), seed=meta("seed", int), split=meta("split", str),
            extra=meta("extra", dict))
        sample.validate()
        if list(sample.image_size) != metadata.get("image_size"):
            raise InputError(f"{where}: image is {sample.image_size[0]}x{sample.image_size[1]}, the metadata says "
                             f"{metadata.get('image_size')}")
        return sample


@dataclass(eq=False)
class Scene:
    """A scanned (or generated) room, stored once and referenced by :attr:`Sample.scene_id`.

    Attributes:
        scene_id: :func:`check_key` name.
        cloud: (N, 3) float32 map-frame points, metres: the robot's map (the synthetic rooms: sampled
            from the mesh at ``pitch``; official data: the released voxelised scan).
        pitch: spacing of the cloud, metres (0.02 officially).
        mesh_vertices: (V, 3) float32 map frame, or None (official data has no mesh).
        mesh_faces: (F, 3) int32 vertex indices, or None.
        mesh_face_colors: (F, 3) uint8 RGB per face, or None.
        sdf: the scene's :class:`~sahmr_ros.evaluation.metrics.SDFGrid` (map frame), or None.
        generator_version: version of the generator that made it (``"official-rich"`` for official data).
        seed: the generator's seed (0 for recorded data).
        extra: JSON-serialisable metadata.
    """

    scene_id: str
    cloud: np.ndarray
    pitch: float = C.SCENE_PITCH_M
    mesh_vertices: np.ndarray | None = None
    mesh_faces: np.ndarray | None = None
    mesh_face_colors: np.ndarray | None = None
    sdf: SDFGrid | None = None
    generator_version: str = ""
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def validate(self) -> "Scene":
        """Check every field and normalise dtypes in place; returns self.

        Raises:
            InputError: naming the field (``scene[<id>].<field>``).
        """
        check_key(self.scene_id, "scene.scene_id")
        f = f"scene[{self.scene_id}]."
        self.cloud = _array(self.cloud, f + "cloud", (None, 3), np.float32)
        self.pitch = float(self.pitch)
        if not self.pitch > 0:
            raise InputError(f"{f}pitch: expected > 0 metres, got {self.pitch}")
        mesh = (self.mesh_vertices, self.mesh_faces, self.mesh_face_colors)
        if any(m is not None for m in mesh):
            if any(m is None for m in mesh):
                raise InputError(f"{f}mesh_vertices, mesh_faces, mesh_face_colors: give all three or none")
            self.mesh_vertices = _array(self.mesh_vertices, f + "mesh_vertices", (None, 3), np.float32)
            faces = _array(self.mesh_faces, f + "mesh_faces", (None, 3), np.int64)
            if len(faces) and (faces.min() < 0 or faces.max() >= len(self.mesh_vertices)):
                raise InputError(f"{f}mesh_faces: indices must lie in 0..{len(self.mesh_vertices) - 1}")
            self.mesh_faces = faces.astype(np.int32)
            self.mesh_face_colors = _array(self.mesh_face_colors, f + "mesh_face_colors", (len(faces), 3), np.uint8)
        if self.sdf is not None and not isinstance(self.sdf, SDFGrid):
            raise InputError(f"{f}sdf: expected an SDFGrid or None, got {type(self.sdf).__name__}")
        if not isinstance(self.generator_version, str):
            raise InputError(f"{f}generator_version: expected a string, got {self.generator_version!r}")
        self.seed = int(self.seed)
        try:
            json.dumps(self.extra, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{f}extra: must be JSON-serialisable without NaN ({exc})") from None
        return self

    def metadata(self) -> dict:
        """JSON-serialisable metadata of the scene."""
        return {"format_version": SAMPLE_FORMAT_VERSION, "scene_id": self.scene_id, "pitch": self.pitch,
                "generator_version": self.generator_version, "seed": self.seed, "extra": self.extra,
                "has_mesh": self.mesh_vertices is not None, "has_sdf": self.sdf is not None}

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Return the flat dict of arrays stored as ``scenes/<scene_id>.npz``.

        Keys: ``cloud``, ``mesh_vertices``, ``mesh_faces``, ``mesh_face_colors``, ``sdf_values``,
        ``sdf_bounds_min``, ``sdf_bounds_max`` (those present) and ``metadata_json`` (a 0-d str array).
        """
        self.validate()
        out = {"cloud": self.cloud}
        if self.mesh_vertices is not None:
            out.update(mesh_vertices=self.mesh_vertices, mesh_faces=self.mesh_faces,
                       mesh_face_colors=self.mesh_face_colors)
        if self.sdf is not None:
            out.update(sdf_values=self.sdf.values, sdf_bounds_min=self.sdf.bounds_min,
                       sdf_bounds_max=self.sdf.bounds_max)
        out["metadata_json"] = np.array(json.dumps(self.metadata(), sort_keys=True))
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], where: str = "scene") -> "Scene":
        """Inverse of :meth:`to_arrays`; validates the result.

        Raises:
            InputError: missing keys, unreadable metadata, or any field :meth:`validate` refuses.
        """
        try:
            meta = json.loads(str(arrays["metadata_json"]))
            cloud = arrays["cloud"]
            mesh = ((arrays["mesh_vertices"], arrays["mesh_faces"], arrays["mesh_face_colors"])
                    if meta["has_mesh"] else (None, None, None))
            sdf = (SDFGrid(arrays["sdf_values"], arrays["sdf_bounds_min"], arrays["sdf_bounds_max"])
                   if meta["has_sdf"] else None)
            version = meta["format_version"]
        except KeyError as exc:
            raise InputError(f"{where}: missing key {exc} (has {sorted(arrays)})") from None
        except (ValueError, TypeError) as exc:
            raise InputError(f"{where}: unreadable metadata_json ({exc})") from None
        if version != SAMPLE_FORMAT_VERSION:
            raise InputError(f"{where}: scene format version {version}, this sahmr_ros reads {SAMPLE_FORMAT_VERSION}")
        return cls(scene_id=meta.get("scene_id"), cloud=cloud, pitch=meta.get("pitch", C.SCENE_PITCH_M),
                   mesh_vertices=mesh[0], mesh_faces=mesh[1], mesh_face_colors=mesh[2], sdf=sdf,
                   generator_version=meta.get("generator_version", ""), seed=meta.get("seed", 0),
                   extra=meta.get("extra", {})).validate()
