"""Readers of the maps robots produce: meshes and clouds in their native formats, map frame or not.

One entry point, :func:`read_scene_geometry`, returns the vertices (or points) and, for a mesh, its
triangles, exactly as the file holds them (its own frame, metres; no cleaning: NaN rows are kept).
Every malformed file raises :class:`sahmr_ros.errors.InputError` in one line naming the file, the
field and the fix; no parser exception escapes.

Formats and readers:

* ``.ply`` (ascii, binary little / big endian; any numeric ``x y z``, other elements and properties
  ignored, polygons fan-triangulated): the parser below. trimesh 5.2 reads neither binary PLY whose
  faces mix polygon sizes (a valid file) nor refuses faces indexing missing vertices, so the PLY
  parser is kept; its header check names what is wrong.
* ``.pcd`` (PCL ascii, binary, binary_compressed): ascii and binary by the numpy parser below;
  binary_compressed (LZF) by pypcd4, an optional dependency, after the header and block sizes are
  checked. Open3D 0.20 is not used: its tensor reader corrupts the heap on PCL's ``_`` padding fields,
  its legacy reader returns zeros for float64 fields, and both read past the end of a file shorter
  than its header claims.
* ``.obj``, ``.glb`` / ``.gltf``: trimesh (scene graphs flattened with their node transforms; glTF is
  y-up by convention: pass a transform into the z-up map frame).
* ``.e57`` (every scan, with its pose; invalid points dropped): pye57, an optional dependency
  (``pip install pye57``; wheels for Linux x86_64, macOS and Windows).
* ``.las`` / ``.laz`` (scaled and offset coordinates): laspy; ``.laz`` also needs its LAZ backend
  (``pip install lazrs``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from sahmr_ros.errors import InputError

__all__ = ["MAP_SUFFIXES", "MESH_SUFFIXES", "SceneGeometry", "read_scene_geometry", "sample_surface"]

MAP_SUFFIXES = (".ply", ".pcd", ".obj", ".glb", ".gltf", ".e57", ".las", ".laz")
MESH_SUFFIXES = (".ply", ".obj", ".glb", ".gltf")  # formats that may hold triangles
MAX_SURFACE_SAMPLES = 20_000_000  # default cap of sample_surface (the spacing grows beyond it)
_SAMPLE_CHUNK = 1_000_000


@dataclass(frozen=True, eq=False)
class SceneGeometry:
    """What a map file holds, in the file's frame.

    Attributes:
        points: (N, 3) float64 vertices of a mesh or points of a cloud, metres; may hold NaN rows.
        faces: (F, 3) int64 triangles indexing ``points``, or None for a cloud (or when faces were
            not asked for).
        kind: the format read (``"ply"``, ``"pcd"``, ``"obj"``, ``"gltf"``, ``"e57"``, ``"las"``).
    """

    points: np.ndarray
    faces: np.ndarray | None
    kind: str

    @property
    def is_mesh(self) -> bool:
        """True when the file holds at least one triangle."""
        return self.faces is not None and len(self.faces) > 0


def read_scene_geometry(path: str | Path, faces: bool = True) -> SceneGeometry:
    """Read a mesh or cloud (formats: module docstring).

    Args:
        path: the file; its suffix picks the reader.
        faces: also read triangles (False: vertices only, which skips the face data of a PLY).

    Returns:
        :class:`SceneGeometry` in the file's frame.

    Raises:
        InputError: missing file, unsupported suffix, malformed content, an optional reader missing.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: map file not found")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        points, tris = _read_ply(path, faces)
        return SceneGeometry(points, tris, "ply")
    if suffix == ".pcd":
        return SceneGeometry(_read_pcd(path), None, "pcd")
    if suffix == ".obj":
        points, tris = _read_trimesh(path, "obj")
        return SceneGeometry(points, tris if faces else None, "obj")
    if suffix in (".glb", ".gltf"):
        points, tris = _read_trimesh(path, suffix.lstrip("."))
        return SceneGeometry(points, tris if faces else None, "gltf")
    if suffix == ".e57":
        return SceneGeometry(_read_e57(path), None, "e57")
    if suffix in (".las", ".laz"):
        return SceneGeometry(_read_las(path), None, "las")
    raise InputError(f"{path}: unsupported map format {suffix!r}; expected one of {', '.join(MAP_SUFFIXES)}")


def sample_surface(vertices: np.ndarray, faces: np.ndarray, spacing: float, seed: int = 0,
                   max_samples: int | None = MAX_SURFACE_SAMPLES, dtype=np.float64) -> np.ndarray:
    """Area-uniform random points on triangles, about one per ``spacing``^2 (seeded: deterministic).

    Args:
        vertices: (V, 3) metres; faces: (F, 3) indices.
        spacing: metres.
        max_samples: at most this many points (the spacing grows beyond it); None: no cap.
        dtype: of the result (float32 halves the memory of a large map's samples).

    Returns:
        (n, 3) points on the faces.
    """
    areas = 0.5 * np.linalg.norm(np.cross(vertices[faces[:, 1]] - vertices[faces[:, 0]],
                                          vertices[faces[:, 2]] - vertices[faces[:, 0]]), axis=1)
    areas[~np.isfinite(areas)] = 0.0
    total = areas.sum()
    n = int(np.ceil(total / spacing**2))
    n = n if max_samples is None else min(n, max_samples)
    out = np.empty((n, 3), dtype)
    if n == 0:
        return out
    cdf = np.cumsum(areas) / total
    rng = np.random.default_rng(seed)
    for s in range(0, n, _SAMPLE_CHUNK):  # chunks bound the temporaries of a large map
        m = min(_SAMPLE_CHUNK, n - s)
        tri = faces[np.searchsorted(cdf, rng.random(m), side="right").clip(0, len(faces) - 1)]
        r1, r2 = np.sqrt(rng.random((m, 1))), rng.random((m, 1))
        a, b, c = (vertices[tri[:, i]] for i in range(3))
        out[s:s + m] = (1 - r1) * a + r1 * (1 - r2) * b + r1 * r2 * c
    return out


# ------------------------------------------------------------------------------------------------
# PLY
# ------------------------------------------------------------------------------------------------
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


@dataclass
class _PlyElement:
    name: str
    count: int
    props: list  # (name, type) for scalars, (name, count_type, item_type) for lists

    @property
    def has_lists(self) -> bool:
        return any(len(p) == 3 for p in self.props)


def _ply_header(data: bytes, where: str) -> tuple[str, list[_PlyElement], int]:
    if not data.startswith(b"ply"):
        raise InputError(f"{where}: not a PLY file (does not start with 'ply')")
    end = data.find(b"end_header")
    if end < 0:
        raise InputError(f"{where}: PLY header has no 'end_header' line")
    body = data.find(b"\n", end)
    body = len(data) if body < 0 else body + 1
    fmt, elements = None, []
    for line in data[:end].decode("ascii", "replace").splitlines()[1:]:
        tok = line.split()
        if not tok or tok[0] in ("comment", "obj_info"):
            continue
        try:
            if tok[0] == "format":
                fmt = tok[1]
            elif tok[0] == "element":
                elements.append(_PlyElement(tok[1], int(tok[2]), []))
                if elements[-1].count < 0:
                    raise InputError(f"{where}: PLY header line {line.strip()!r}: the count must be >= 0; "
                                     "write the number of rows the file holds")
            elif tok[0] == "property" and tok[1] == "list":
                elements[-1].props.append((tok[4], _PLY_TYPES[tok[2]], _PLY_TYPES[tok[3]]))
            elif tok[0] == "property":
                elements[-1].props.append((tok[2], _PLY_TYPES[tok[1]]))
        except InputError:
            raise
        except (IndexError, ValueError, KeyError):
            raise InputError(f"{where}: malformed PLY header line {line.strip()!r}") from None
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise InputError(f"{where}: PLY field `format`: expected ascii, binary_little_endian or "
                         f"binary_big_endian, got {fmt!r}")
    return fmt, elements, body


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        out.append(n if n not in seen else f"{n}__{seen[n]}")
        seen[n] = seen.get(n, 0) + 1
    return out


def _ply_binary_element(data: bytes, offset: int, el: _PlyElement, endian: str, where: str):
    """Read one binary element; returns ({prop: (count,) array or list of arrays}, new offset)."""
    names = _unique([p[0] for p in el.props])
    truncated = InputError(f"{where}: file ends inside element `{el.name}` (header says {el.count} rows)")
    if not el.has_lists or el.count == 0:
        dt = np.dtype([(n, endian + p[1]) for n, p in zip(names, el.props)])
        if offset + dt.itemsize * el.count > len(data):
            raise truncated
        arr = np.frombuffer(data, dtype=dt, count=el.count, offset=offset)
        return {n: arr[n] for n in names}, offset + dt.itemsize * el.count
    # Lists: assume every row has the lengths of the first row (triangle faces), check, else walk.
    lengths, pos = [], offset
    for p in el.props:
        size = np.dtype(p[1]).itemsize
        if pos + size > len(data):
            raise truncated
        if len(p) == 3:
            n = int(np.frombuffer(data, endian + p[1], 1, pos)[0])
            lengths.append(n)
            pos += size + n * np.dtype(p[2]).itemsize
        else:
            pos += size
    fields = []
    li = iter(lengths)
    for n, p in zip(names, el.props):
        if len(p) == 3:
            fields += [(n + "__n", endian + p[1]), (n, endian + p[2], (next(li),))]
        else:
            fields.append((n, endian + p[1]))
    dt = np.dtype(fields)
    if offset + dt.itemsize * el.count <= len(data):
        arr = np.frombuffer(data, dtype=dt, count=el.count, offset=offset)
        li = iter(lengths)
        if all((arr[n + "__n"] == next(li)).all() for n, p in zip(names, el.props) if len(p) == 3):
            return {n: arr[n] for n in names}, offset + dt.itemsize * el.count
    cols: dict[str, list] = {n: [] for n in names}
    pos = offset
    try:
        for _ in range(el.count):
            for n, p in zip(names, el.props):
                v = np.frombuffer(data, endian + p[1], 1, pos)[0]
                pos += np.dtype(p[1]).itemsize
                if len(p) == 3:
                    item = np.dtype(endian + p[2])
                    cols[n].append(np.frombuffer(data, item, int(v), pos))
                    pos += int(v) * item.itemsize
                else:
                    cols[n].append(v)
    except ValueError:
        raise truncated from None
    return {n: (c if len(p) == 3 else np.asarray(c)) for (n, c), p in zip(cols.items(), el.props)}, pos


def _ply_ascii_element(lines: list[str], start: int, el: _PlyElement, where: str):
    rows = lines[start:start + el.count]
    if len(rows) < el.count:
        raise InputError(f"{where}: file ends inside element `{el.name}` after {len(rows)} of {el.count} rows")
    names = _unique([p[0] for p in el.props])
    try:
        if not el.has_lists:
            vals = np.array(" ".join(rows).split(), dtype=np.float64)
            if vals.size != el.count * len(names):
                raise ValueError
            vals = vals.reshape(el.count, len(names))
            return {n: vals[:, i] for i, n in enumerate(names)}, start + el.count
        cols: dict[str, list] = {n: [] for n in names}
        for row in rows:
            tok, i = row.split(), 0
            for n, p in zip(names, el.props):
                if len(p) == 3:
                    k = int(tok[i])
                    cols[n].append(np.array(tok[i + 1:i + 1 + k], dtype=np.float64))
                    i += 1 + k
                else:
                    cols[n].append(float(tok[i]))
                    i += 1
        return {n: (c if len(p) == 3 else np.asarray(c)) for (n, c), p in zip(cols.items(), el.props)}, \
            start + el.count
    except (ValueError, IndexError):
        raise InputError(f"{where}: element `{el.name}`: rows do not match the header's properties "
                         f"{[p[0] for p in el.props]}") from None


def _read_ply(path: Path, want_faces: bool) -> tuple[np.ndarray, np.ndarray | None]:
    where = str(path)
    data = path.read_bytes()
    fmt, elements, body = _ply_header(data, where)
    if not any(el.name == "vertex" for el in elements):
        raise InputError(f"{where}: PLY header has no `element vertex`; expected a point cloud or mesh")
    vertex = next(el for el in elements if el.name == "vertex")
    missing = [c for c in "xyz" if c not in [p[0] for p in vertex.props]]
    if missing:
        raise InputError(f"{where}: PLY element `vertex`: property {', '.join(missing)} missing; "
                         f"expected x, y, z, found {[p[0] for p in vertex.props]}")
    parsed: dict[str, dict] = {}
    if fmt == "ascii":
        lines = [ln for ln in data[body:].decode("ascii", "replace").splitlines() if ln.strip()]
        pos = 0
        for el in elements:
            parsed[el.name], pos = _ply_ascii_element(lines, pos, el, where)
            if el.name == "vertex" and not want_faces:
                break
    else:
        endian, pos = "<" if fmt == "binary_little_endian" else ">", body
        for el in elements:
            parsed[el.name], pos = _ply_binary_element(data, pos, el, endian, where)
            if el.name == "vertex" and not want_faces:
                break
    v = parsed["vertex"]
    points = np.stack([np.asarray(v[c], dtype=np.float64) for c in "xyz"], axis=1)
    faces = None
    if want_faces and "face" in parsed:
        face = parsed["face"]
        key = next((k for k in ("vertex_indices", "vertex_index") if k in face), None)
        if key is not None:
            faces = _triangulate(face[key], len(points), where)
    return points, faces


def _triangulate(polygons, num_vertices: int, where: str) -> np.ndarray:
    """Fan-triangulate polygons (a (F, k) array or a list of index arrays) to (T, 3) int64."""
    if isinstance(polygons, np.ndarray) and polygons.ndim == 2:
        polys = polygons.astype(np.int64)
        tris = [polys[:, [0, i, i + 1]] for i in range(1, polys.shape[1] - 1)]
    else:
        tris = [np.asarray(p, dtype=np.int64)[[0, i, i + 1]] for p in polygons for i in range(1, len(p) - 1)]
        tris = [np.asarray(tris).reshape(-1, 3)]
    faces = np.concatenate(tris, axis=0) if tris else np.zeros((0, 3), np.int64)
    _check_faces(faces, num_vertices, where)
    return faces


def _check_faces(faces: np.ndarray, num_vertices: int, where: str) -> None:
    if faces.size and (faces.min() < 0 or faces.max() >= num_vertices):
        raise InputError(f"{where}: faces index vertices outside 0..{num_vertices - 1}")


# ------------------------------------------------------------------------------------------------
# PCD: ascii and binary read here, binary_compressed by pypcd4 (both behind the header check)
# ------------------------------------------------------------------------------------------------
_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4", ("I", 8): "i8",
              ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


def _read_pcd(path: Path) -> np.ndarray:
    where = str(path)
    data = path.read_bytes()
    header: dict[str, list[str]] = {}
    pos = 0
    while "DATA" not in header:
        nl = data.find(b"\n", pos)
        if nl < 0:
            raise InputError(f"{where}: PCD header has no `DATA` line")
        line = data[pos:nl].decode("ascii", "replace").split("#", 1)[0].split()
        pos = nl + 1
        if line:
            header[line[0].upper()] = line[1:]
    for key in ("FIELDS", "SIZE", "TYPE"):
        if key not in header:
            raise InputError(f"{where}: PCD header field `{key}` missing")
    fields = header["FIELDS"]
    counts = header.get("COUNT", ["1"] * len(fields))
    for key, vals in (("SIZE", header["SIZE"]), ("TYPE", header["TYPE"]), ("COUNT", counts)):
        if len(vals) != len(fields):
            raise InputError(f"{where}: PCD header field `{key}`: {len(vals)} entries for {len(fields)} FIELDS")
    try:
        sizes, counts = [int(s) for s in header["SIZE"]], [int(c) for c in counts]
        types = [_PCD_TYPES[(t.upper(), s)] for t, s in zip(header["TYPE"], sizes)]
        width = int(header.get("WIDTH", ["0"])[0])
        height = int(header.get("HEIGHT", ["1"])[0])
        n = int(header["POINTS"][0]) if "POINTS" in header else width * height
    except (ValueError, KeyError, IndexError):
        raise InputError(f"{where}: PCD header fields SIZE/TYPE/WIDTH/HEIGHT/POINTS: expected integers and "
                         f"types F (4, 8), I or U (1, 2, 4, 8), got {header}") from None
    for key, value in (("POINTS", n), ("WIDTH", width), ("HEIGHT", height)):
        if value < 0:
            raise InputError(f"{where}: PCD header field `{key}`: {value} is negative; expected the point count "
                             "(POINTS = WIDTH x HEIGHT)")
    if min(sizes + counts) < 1:
        raise InputError(f"{where}: PCD header fields SIZE/COUNT: expected positive integers, got "
                         f"{header['SIZE']} / {counts}")
    missing = [c for c in "xyz" if c not in fields]
    if missing:
        raise InputError(f"{where}: PCD field `FIELDS`: {', '.join(missing)} missing; expected x, y, z, "
                         f"found {fields}")
    mode = (header["DATA"] or [""])[0].lower()
    names = _unique(fields)
    if mode == "binary":
        dt = np.dtype([(nm, "<" + t, (c,)) if c > 1 else (nm, "<" + t) for nm, t, c in zip(names, types, counts)])
        if pos + dt.itemsize * n > len(data):
            raise InputError(f"{where}: PCD binary data is shorter than POINTS={n} x {dt.itemsize} bytes")
        arr = np.frombuffer(data, dtype=dt, count=n, offset=pos)
        cols = {c: arr[c].reshape(n, -1)[:, 0] for c in "xyz"}
    elif mode == "ascii":
        tokens = data[pos:].decode("ascii", "replace").split()
        row = sum(counts)
        try:
            vals = np.array(tokens[: n * row], dtype=np.float64)
        except ValueError:
            raise InputError(f"{where}: PCD ascii data contains non-numbers") from None
        if vals.size != n * row:
            raise InputError(f"{where}: PCD ascii data has {len(tokens)} values, expected POINTS={n} x {row}")
        vals = vals.reshape(n, row)
        first = np.cumsum([0] + counts)
        cols = {c: vals[:, first[fields.index(c)]] for c in "xyz"}
    elif mode == "binary_compressed":
        row = sum(s * c for s, c in zip(sizes, counts))
        return _read_pcd_compressed(path, data, pos, n, row)
    else:
        raise InputError(f"{where}: PCD field `DATA`: expected ascii, binary or binary_compressed, got {mode!r}")
    return np.stack([cols[c].astype(np.float64) for c in "xyz"], axis=1)


def _read_pcd_compressed(path: Path, data: bytes, pos: int, n: int, row: int) -> np.ndarray:
    """binary_compressed (LZF, PCL's default for large clouds) through pypcd4, sizes checked first."""
    fix = "save the cloud as binary or ascii (pcl_convert_pcd_ascii_binary in.pcd out.pcd 1)"
    packed, unpacked = np.frombuffer(data, "<u4", 2, pos).tolist() if pos + 8 <= len(data) else (0, 0)
    if n and (packed == 0 or pos + 8 + packed > len(data) or unpacked != n * row):
        raise InputError(f"{path}: PCD field `DATA`: the binary_compressed block is truncated or its sizes "
                         f"({packed} packed, {unpacked} unpacked bytes) do not match POINTS={n} x {row} bytes; {fix}")
    if n == 0:
        return np.zeros((0, 3))
    try:
        from pypcd4 import PointCloud
    except ImportError:
        raise InputError(f"{path}: PCD field `DATA`: binary_compressed needs pypcd4 (pip install pypcd4, or "
                         f"pip install 'sahmr_ros[maps]'); or {fix}") from None
    try:
        xyz = PointCloud.from_path(path).numpy(("x", "y", "z"))
    except Exception as e:  # noqa: BLE001 - pypcd4 raises RuntimeError, ValueError, pydantic errors on bad data
        raise InputError(f"{path}: PCD field `DATA`: the binary_compressed block could not be decoded "
                         f"({type(e).__name__}: {e}); {fix}") from None
    return np.asarray(xyz, dtype=np.float64).reshape(-1, 3)


# ------------------------------------------------------------------------------------------------
# OBJ, glTF: trimesh
# ------------------------------------------------------------------------------------------------
def _first_bad_obj_line(path: Path) -> str | None:
    """Name the first ``v`` line without three numbers (only run once a read failed)."""
    for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if line.startswith("v "):
            try:
                [float(t) for t in line.split()[1:4]]
                if len(line.split()) < 4:
                    raise ValueError
            except ValueError:
                return f"line {i}: expected `v x y z`, got {line.strip()!r}"
    return None


def _read_trimesh(path: Path, file_type: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Vertices and triangles of every geometry of a trimesh-readable file, node transforms applied."""
    import trimesh

    where = str(path)
    try:
        scene = trimesh.load_scene(str(path), file_type=file_type, process=False)
        geometries = scene.dump(concatenate=False)
    except Exception as e:  # noqa: BLE001 - trimesh raises many types (ValueError, IndexError...) on bad files
        bad = _first_bad_obj_line(path) if file_type == "obj" else None
        raise InputError(f"{where}: {bad or f'not a readable {file_type.upper()} file'} "
                         f"({type(e).__name__}: {e})") from None
    points, faces, offset = [], [], 0
    for g in geometries:
        vertices = np.asarray(getattr(g, "vertices", np.zeros((0, 3))), dtype=np.float64)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            bad = _first_bad_obj_line(path) if file_type == "obj" else None
            raise InputError(f"{where}: {bad or f'vertices of shape {vertices.shape}; expected (N, 3)'}")
        points.append(vertices)
        if isinstance(g, trimesh.Trimesh) and len(g.faces):
            faces.append(np.asarray(g.faces, dtype=np.int64) + offset)
        offset += len(vertices)
    points = np.concatenate(points) if points else np.zeros((0, 3))
    tris = np.concatenate(faces) if faces else None
    if tris is not None:
        _check_faces(tris, len(points), where)
    return points, tris


# ------------------------------------------------------------------------------------------------
# E57 (pye57), LAS / LAZ (laspy): optional readers
# ------------------------------------------------------------------------------------------------
def _read_e57(path: Path) -> np.ndarray:
    try:
        import pye57
    except ImportError:
        raise InputError(f"{path}: reading E57 needs pye57; install it (pip install pye57, or "
                         "pip install 'sahmr_ros[maps]'), or convert the scan to PLY or PCD") from None
    try:
        with pye57.E57(str(path)) as e57:
            scans = []
            for i in range(e57.scan_count):
                data = e57.read_scan(i, ignore_missing_fields=True, transform=True)
                scans.append(np.stack([data[f"cartesian{a}"] for a in "XYZ"], axis=1).astype(np.float64))
    except Exception as e:  # noqa: BLE001 - libE57Format raises its own exception types on bad files
        raise InputError(f"{path}: not a readable E57 file ({type(e).__name__}: {e})") from None
    return np.concatenate(scans) if scans else np.zeros((0, 3))


def _read_las(path: Path) -> np.ndarray:
    try:
        import laspy
    except ImportError:
        raise InputError(f"{path}: reading LAS needs laspy; install it (pip install laspy)") from None
    try:
        las = laspy.read(str(path))
        return np.asarray(las.xyz, dtype=np.float64)
    except laspy.errors.LaspyException as e:
        fix = "; LAZ needs a backend: pip install lazrs" if "backend" in str(e).lower() else ""
        raise InputError(f"{path}: not a readable LAS/LAZ file ({e}){fix}") from None
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: not a readable LAS/LAZ file ({type(e).__name__}: {e})") from None
