"""``sahmr scene prepare``: a robot's map file -> the scene file the node, ``sahmr bag`` and ``sahmr infer`` load.

Steps, in order (frames: the input's own frame, then the map frame, REP-103, metres):

1. read the mesh or cloud (:mod:`sahmr_ros.maps.readers`);
2. apply ``T_map_input`` (optional) to every vertex / point;
3. drop non-finite rows (and the triangles that use them);
4. crop to an axis-aligned box of the map frame (optional; a mesh keeps the triangles whose bounds
   meet the box, so sampling stays within it);
5. sample a mesh on its surface, nine points per (2 cm)^2 (``MESH_SAMPLES_PER_VOXEL_FACE``), plus its
   vertices;
6. voxelise at 2 cm exactly as :class:`sahmr_ros.scene.Scene` does (the mean of each voxel's points,
   float32), nudged by a float32 ulp where rounding put a mean on the next voxel's face, so the
   result is a fixed point of the Scene's voxelisation: loading it changes nothing;
7. remove statistical outliers among the voxels (:func:`statistical_outliers`);
8. an SDF grid (the layout of :class:`sahmr_ros.evaluation.metrics.SDFGrid`, which PenE / ConFE
   sample): signed from a watertight mesh (Open3D ray casting); from anything else only when asked
   for, unsigned (a cloud has no inside; an open mesh's inside is undefined).

The file is a scene ``.npz`` in the layout of ``sahmr synth``'s ``scenes/<id>.npz``
(:class:`sahmr_ros.data.sample.Scene`: ``cloud`` float32, ``sdf_*`` float32, compressed), with the
provenance in its metadata (``extra``): input file name, size and sha256, transform, crop, counts
per step, SDF kind, tool version and date.
"""

from __future__ import annotations

import datetime
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from sahmr_ros import __version__
from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.geometry import voxel_means
from sahmr_ros.io import sha256_file
from sahmr_ros.maps.readers import read_scene_geometry, sample_surface

__all__ = ["PrepareOptions", "PreparedScene", "SDF_KINDS", "check_output_path", "fixed_point_voxels", "parse_crop",
           "prepare_scene", "statistical_outliers", "write_prepared_scene"]

TOOL = "sahmr scene prepare"
SDF_KINDS = ("auto", "signed", "unsigned", "none")
SDF_SPACING_M = 0.05  # as the synthetic rooms' grids (data.rooms.SDF_GRID_SPACING_M)
SDF_MARGIN_M = 0.1  # grid bounds: the prepared cloud's bounds grown by this on every side
MAX_SDF_NODES = 16_000_000  # 64 MB of float32; beyond it the spacing grows (recorded in the provenance)
OUTLIER_NEIGHBOURS = 8  # k of the mean neighbour distance (a 1-voxel-wide line still has 8 within 8 cm)
OUTLIER_STD_RATIO = 3.0  # PCL's StatisticalOutlierRemoval threshold: mean + ratio * std of the means...
OUTLIER_MIN_DISTANCE_PITCHES = 3.0  # ...but never below 3 pitches: on a clean 2 cm grid std is ~1 mm and
#                                     edges would go; a 1-voxel line's mean is 2.5 pitches, a lone point's far more
MESH_SAMPLES_PER_VOXEL_FACE = 9  # surface samples per pitch^2: a face on the voxel grid leaves e^-9 of
#                                   its voxels empty (one per pitch^2 would leave e^-1 = 37 %)
_QUERY_CHUNK = 1_000_000  # SDF nodes per ray-casting / k-d tree call (bounds the temporary memory)


@dataclass(frozen=True)
class PrepareOptions:
    """How to prepare a map (the options of ``sahmr scene prepare``).

    Attributes:
        transform: (4, 4) ``T_map_input`` mapping the file's points into the map frame, or None.
        crop: ``(min, max)`` (3,) corners of an axis-aligned box in the map frame, metres, or None.
        pitch: voxel size, metres (the pipeline's 2 cm).
        remove_outliers: drop statistical outliers among the voxels (:func:`statistical_outliers`).
        sdf: ``auto`` (signed for a watertight mesh, else none), ``signed`` (a watertight mesh, else an
            error), ``unsigned`` (distance to the mesh or cloud), or ``none``.
        sdf_spacing: node spacing of the SDF grid, metres (grows past ``MAX_SDF_NODES`` nodes).
    """

    transform: np.ndarray | None = None
    crop: tuple[np.ndarray, np.ndarray] | None = None
    pitch: float = C.SCENE_PITCH_M
    remove_outliers: bool = True
    sdf: str = "auto"
    sdf_spacing: float = SDF_SPACING_M

    def __post_init__(self):
        if self.sdf not in SDF_KINDS:
            raise InputError(f"--sdf: expected one of {', '.join(SDF_KINDS)}, got {self.sdf!r}")
        for name in ("pitch", "sdf_spacing"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and np.isfinite(value) and value > 0):
                raise InputError(f"--{name.replace('_', '-')}: expected a positive number of metres, got {value!r}")
        if self.transform is not None and np.asarray(self.transform).shape != (4, 4):
            raise InputError(f"--transform: expected a (4, 4) matrix, got shape {np.asarray(self.transform).shape}")


@dataclass(frozen=True, eq=False)
class PreparedScene:
    """The result of :func:`prepare_scene`.

    Attributes:
        points: (M, 3) float32 map-frame voxel points, a fixed point of ``Scene`` voxelisation.
        sdf: the :class:`~sahmr_ros.evaluation.metrics.SDFGrid`, or None.
        provenance: JSON-serialisable record (module docstring).
    """

    points: np.ndarray
    sdf: object | None
    provenance: dict = field(default_factory=dict)

    def summary_lines(self) -> list[str]:
        """Return what happened, a few lines for the command's output."""
        c, p = self.provenance["counts"], self.provenance
        kind = "mesh" if p["input"]["mesh"] else "cloud"
        lines = [f"read {p['input']['file']} ({p['input']['format']} {kind}): {c['input_points']} "
                 f"{'vertices' if p['input']['mesh'] else 'points'}"
                 + (f", {c['input_faces']} triangles" if p["input"]["mesh"] else "")]
        sampled = f"; sampled {c['surface_samples']} surface points" if p["input"]["mesh"] else ""
        lines.append(f"dropped {c['non_finite']} non-finite, {c['outside_crop']} outside the crop, {c['out_of_range']} "
                     f"beyond {C.MAX_COORDINATE_M:g} m{sampled}")
        lines.append(f"{c['voxels']} voxels of {p['pitch_m']:g} m, {c['outliers']} outliers removed -> "
                     f"{c['points']} points")
        sdf = p["sdf"]
        lines.append(f"SDF: {sdf['kind']}" + (f", {sdf['shape'][0]}x{sdf['shape'][1]}x{sdf['shape'][2]} nodes at "
                                              f"{sdf['spacing_m']:.3f} m" if sdf["kind"] != "none" else "")
                     + (f" ({sdf['note']})" if sdf.get("note") else ""))
        return lines


def parse_crop(text: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``--crop "xmin,ymin,zmin,xmax,ymax,zmax"`` (map frame, metres).

    Raises:
        InputError: not 6 finite numbers, or a max not above its min.
    """
    tokens = [t for t in re.split(r"[\s,;\[\]()]+", str(text).strip()) if t]
    try:
        vals = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError:
        raise InputError(f"--crop: expected 6 numbers xmin,ymin,zmin,xmax,ymax,zmax (metres, map frame), got "
                         f"{text!r}") from None
    if vals.size != 6 or not np.isfinite(vals).all():
        raise InputError(f"--crop: expected 6 finite numbers xmin,ymin,zmin,xmax,ymax,zmax (metres, map frame), "
                         f"got {text!r}")
    lo, hi = vals[:3], vals[3:]
    if not (hi > lo).all():
        raise InputError(f"--crop: each max must exceed its min, got min {lo.tolist()} and max {hi.tolist()}")
    return lo, hi


def fixed_point_voxels(points: np.ndarray, pitch: float = C.SCENE_PITCH_M) -> np.ndarray:
    """Voxelise as :class:`sahmr_ros.scene.Scene` does, into a cloud its voxelisation leaves unchanged.

    The Scene keeps the float32 mean of each voxel's points, ordered by voxel. A float32 mean can round
    onto the next voxel's face; such rows are moved one float32 ulp at a time towards their voxel's
    centre (at most a few ulps, sub-micrometre), so that ``Scene(out).points_map`` equals ``out`` bit
    for bit.

    Args:
        points: (N, 3) finite map-frame points, metres.
        pitch: voxel size, metres.

    Returns:
        (M, 3) float32, one point per occupied voxel, in the Scene's order.
    """
    coords, out = voxel_means(points, pitch)
    for _ in range(16):
        bad = np.flatnonzero((np.floor(out.astype(np.float64) / pitch) != coords).any(axis=1))
        if len(bad) == 0:
            return out
        centre = ((coords[bad].astype(np.float64) + 0.5) * pitch).astype(np.float32)
        out[bad] = np.nextafter(out[bad], centre)
    raise AssertionError("voxel means did not settle inside their voxels")  # float32 ulps << pitch: unreachable


def statistical_outliers(points: np.ndarray, pitch: float = C.SCENE_PITCH_M, k: int = OUTLIER_NEIGHBOURS,
                         std_ratio: float = OUTLIER_STD_RATIO,
                         min_pitches: float = OUTLIER_MIN_DISTANCE_PITCHES) -> np.ndarray:
    """Flag points whose mean distance to their ``k`` nearest neighbours is far above the others'.

    PCL's StatisticalOutlierRemoval (threshold: mean + ``std_ratio`` x std of every point's mean
    neighbour distance), with the threshold floored at ``min_pitches`` x ``pitch``: on a clean voxel
    grid the spread is tiny and the plain rule would strip every edge and thin leg.

    Args:
        points: (M, 3) metres.

    Returns:
        (M,) bool, True for an outlier.
    """
    from scipy.spatial import cKDTree

    points = np.asarray(points, dtype=np.float64)
    if len(points) <= k:
        return np.zeros(len(points), bool)
    dist, _ = cKDTree(points).query(points, k=k + 1, workers=-1)  # column 0 is the point itself
    mean = dist[:, 1:].mean(axis=1)
    threshold = max(mean.mean() + std_ratio * mean.std(), min_pitches * pitch)
    return mean > threshold


def _sdf_grid_shape(lo: np.ndarray, hi: np.ndarray, spacing: float) -> tuple[np.ndarray, float]:
    """Node counts per axis (each >= 2) at ``spacing``, grown until at most ``MAX_SDF_NODES``."""
    while True:
        shape = np.maximum(np.ceil((hi - lo) / spacing).astype(np.int64) + 1, 2)
        if np.prod(shape) <= MAX_SDF_NODES:
            return shape, spacing
        spacing *= 1.05 * (np.prod(shape) / MAX_SDF_NODES) ** (1 / 3)


def _sdf_values(kind: str, lo: np.ndarray, spacing: float, shape: np.ndarray, vertices: np.ndarray | None,
                faces: np.ndarray | None, points: np.ndarray) -> np.ndarray:
    """Return the distances at the grid nodes, shape ``shape``.

    Signed or unsigned to the mesh (Open3D ray casting) when ``faces`` is given, else unsigned to
    ``points`` (k-d tree). Nodes are made a chunk at a time.
    """
    out = np.empty(int(np.prod(shape)), np.float32)

    def nodes(s: int) -> np.ndarray:
        idx = np.unravel_index(np.arange(s, min(s + _QUERY_CHUNK, len(out))), tuple(shape))
        return np.stack([lo[a] + idx[a] * spacing for a in range(3)], axis=1)

    if faces is None:
        from scipy.spatial import cKDTree

        tree = cKDTree(points)
        for s in range(0, len(out), _QUERY_CHUNK):
            out[s:s + _QUERY_CHUNK] = tree.query(nodes(s), workers=-1)[0]
        return out.reshape(tuple(shape))
    import open3d as o3d

    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(np.ascontiguousarray(vertices, np.float32)),
                        o3d.core.Tensor(np.ascontiguousarray(faces, np.uint32)))
    query = scene.compute_signed_distance if kind == "signed" else scene.compute_distance
    for s in range(0, len(out), _QUERY_CHUNK):
        out[s:s + _QUERY_CHUNK] = query(o3d.core.Tensor(nodes(s).astype(np.float32))).numpy()
    return out.reshape(tuple(shape))


def _watertight(vertices: np.ndarray, faces: np.ndarray) -> tuple[bool, str]:
    """Whether the mesh (vertices merged) is closed and consistently wound; the reason when not."""
    import trimesh

    mesh = trimesh.Trimesh(vertices, faces, process=True)
    if mesh.is_watertight and mesh.is_winding_consistent:
        return True, ""
    open_edges = int(np.sum(np.bincount(mesh.edges_unique_inverse, minlength=len(mesh.edges_unique)) != 2))
    return False, (f"{open_edges} edges are not shared by exactly two triangles" if open_edges else
                   "the triangles' winding is inconsistent")


def prepare_scene(path: str | Path, options: PrepareOptions = PrepareOptions()) -> PreparedScene:
    """Prepare a map file (module docstring: the steps).

    Args:
        path: a file of :data:`sahmr_ros.maps.MAP_SUFFIXES`.
        options: transform, crop, pitch, outliers, SDF.

    Returns:
        :class:`PreparedScene`.

    Raises:
        InputError: unreadable input, nothing left after cleaning and cropping, ``sdf="signed"`` for
            something other than a watertight mesh.
    """
    from sahmr_ros.evaluation.metrics import SDFGrid

    path = Path(path)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    geometry = read_scene_geometry(path, faces=True)
    vertices, faces = geometry.points, geometry.faces if geometry.is_mesh else None
    counts = {"input_points": len(vertices), "input_faces": 0 if faces is None else len(faces)}
    if len(vertices) == 0:
        raise InputError(f"{path}: holds no point; expected a map (mesh or cloud)")
    timings["read_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if options.transform is not None:
        T = np.asarray(options.transform, dtype=np.float64)
        vertices = vertices @ T[:3, :3].T + T[:3, 3]
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(vertices).all(axis=1)
    counts["non_finite"] = int((~finite).sum())
    mesh_vertices, mesh_faces = None, None
    if faces is not None:
        faces = faces[finite[faces].all(axis=1)]
        used, inverse = np.unique(faces, return_inverse=True)
        mesh_vertices, mesh_faces = vertices[used], inverse.reshape(-1, 3)  # the whole mesh: the SDF needs it uncropped
    points = vertices[finite]
    if options.crop is not None:
        lo, hi = (np.asarray(b, dtype=np.float64) for b in options.crop)
        inside = ((points >= lo) & (points <= hi)).all(axis=1)
        counts["outside_crop"] = int((~inside).sum())
        points = points[inside]
        if faces is not None:
            corners = vertices[faces]  # (F, 3, 3)
            faces = faces[((corners.max(axis=1) >= lo) & (corners.min(axis=1) <= hi)).all(axis=1)]
    else:
        counts["outside_crop"] = 0
    counts["surface_samples"] = 0
    if faces is not None and len(faces):
        samples = sample_surface(vertices, faces, options.pitch / np.sqrt(MESH_SAMPLES_PER_VOXEL_FACE),
                                 max_samples=None, dtype=np.float32)
        if options.crop is not None:
            samples = samples[((samples >= lo) & (samples <= hi)).all(axis=1)]
        counts["surface_samples"] = len(samples)
        points = np.concatenate([points, samples])
    in_range = (np.abs(points) <= C.MAX_COORDINATE_M).all(axis=1)
    counts["out_of_range"] = int((~in_range).sum())
    points = points[in_range]
    if len(points) == 0:
        raise InputError(f"{path}: no point left after dropping non-finite ones and cropping "
                         f"(crop {None if options.crop is None else [b.tolist() for b in options.crop]}); check "
                         "--transform and --crop against the map's bounds")
    timings["clean_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    voxels = fixed_point_voxels(points, options.pitch)
    del points
    counts["voxels"] = len(voxels)
    timings["voxelise_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    outliers = statistical_outliers(voxels, options.pitch) if options.remove_outliers else np.zeros(len(voxels), bool)
    voxels = voxels[~outliers]
    counts["outliers"] = int(outliers.sum())
    counts["points"] = len(voxels)
    timings["outliers_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sdf, sdf_info = None, {"kind": "none"}
    kind = options.sdf
    if kind in ("auto", "signed"):
        if mesh_faces is None or len(mesh_faces) == 0:
            why = "the input is a point cloud, which has no inside"
            closed = False
        else:
            closed, why = _watertight(mesh_vertices, mesh_faces)
        if kind == "signed" and not closed:
            raise InputError(f"{path}: --sdf signed needs a watertight mesh, but {why}; use --sdf unsigned (PenE then "
                             "counts nothing) or --sdf none")
        kind = "signed" if closed else "none"
        if not closed:
            sdf_info["note"] = f"no signed distance: {why}; --sdf unsigned stores the distance to the surface"
    if kind in ("signed", "unsigned"):
        use_mesh = mesh_faces is not None and len(mesh_faces) > 0
        lo = voxels.min(axis=0).astype(np.float64) - SDF_MARGIN_M
        shape, spacing = _sdf_grid_shape(lo, voxels.max(axis=0).astype(np.float64) + SDF_MARGIN_M,
                                         options.sdf_spacing)
        hi = lo + (shape - 1) * spacing
        values = _sdf_values(kind, lo, spacing, shape, mesh_vertices, mesh_faces if use_mesh else None,
                             voxels.astype(np.float64))
        sdf = SDFGrid(values, lo, hi)
        notes = ["unsigned distance: no negative values, so PenE counts nothing"] if kind == "unsigned" else []
        if spacing != options.sdf_spacing:
            notes.append(f"spacing grown from {options.sdf_spacing:g} m to stay within {MAX_SDF_NODES} nodes")
        sdf_info = {"kind": kind, "spacing_m": float(spacing), "shape": [int(n) for n in shape],
                    "bounds_min": lo.tolist(), "bounds_max": hi.tolist(), "source": "mesh" if use_mesh else "cloud"}
        if notes:
            sdf_info["note"] = "; ".join(notes)
    timings["sdf_s"] = time.perf_counter() - t0

    provenance = {
        "tool": TOOL, "sahmr_ros_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "input": {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path),
                  "format": geometry.kind, "mesh": geometry.is_mesh},
        "transform_map_input": None if options.transform is None else np.asarray(options.transform).tolist(),
        "crop_map": None if options.crop is None else {"min": options.crop[0].tolist(),
                                                       "max": options.crop[1].tolist()},
        "pitch_m": options.pitch,
        "voxels": "float32 mean of each voxel's points (sahmr_ros.scene.Scene's voxelisation, a fixed point of it)",
        "outliers": ({"k": OUTLIER_NEIGHBOURS, "std_ratio": OUTLIER_STD_RATIO,
                      "min_mean_distance_m": OUTLIER_MIN_DISTANCE_PITCHES * options.pitch}
                     if options.remove_outliers else None),
        "sdf": sdf_info, "counts": counts, "seconds": {k: round(v, 3) for k, v in timings.items()},
    }
    return PreparedScene(points=voxels, sdf=sdf, provenance=provenance)


def check_output_path(path: str | Path) -> Path:
    """Refuse an output name that is not ``.npz`` or lies below a file (before minutes of preparing)."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise InputError(f"-o {path}: the scene file must end in .npz (a compressed numpy archive)")
    if path.is_dir():
        raise InputError(f"-o {path}: is a directory; give the scene file's name (e.g. {path / 'scene.npz'})")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"-o {path}: {parent} is a file, not a directory; choose another path")
            break
    return path


def write_prepared_scene(prepared: PreparedScene, path: str | Path) -> Path:
    """Write the scene file (compressed ``.npz``, layout of :class:`sahmr_ros.data.sample.Scene`).

    Raises:
        InputError: ``path`` not ending in ``.npz``, or a folder that cannot be written.
    """
    from sahmr_ros.data.sample import Scene as StoredScene

    path = check_output_path(path)
    stem = re.sub(r"[^A-Za-z0-9_-]", "_", Path(prepared.provenance["input"]["file"]).stem)[:200] or "scene"
    stored = StoredScene(scene_id=stem, cloud=prepared.points, pitch=prepared.provenance["pitch_m"],
                         sdf=prepared.sdf, generator_version=f"{TOOL} {__version__}", extra=prepared.provenance)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **stored.to_arrays())
    except OSError as e:
        raise InputError(f"-o {path}: cannot write the scene file ({e.strerror or e}); choose a writable path") \
            from None
    return path
