"""Mesh levels a consumer can ask for: the full 6890-vertex body, or the network's 1723-vertex level.

SA-HMR's mesh network works on 431 and 1723 vertices and up-samples to 6890. The 1723 level is a
vertex selection of the full mesh (``mesh_downsampling.npz``: ``D[0]``, one 1 per row) and the file
holds its triangles (``F[1]``: the decimated mesh whose vertices are those rows, in that order), so a
lighter mesh costs no new geometry: ``vertices_1723 = vertices_6890[index_1723]``, ``faces = F[1]``.

:func:`mesh_report` checks what a level decodes to (used at load time and by the tests): indices in
range, no degenerate triangles, every edge shared by at most two triangles and, for a closed surface,
by exactly two with opposite directions (consistent orientation), the Euler characteristic and the
connected components.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError

__all__ = ["MESH_LEVELS", "MeshLevel", "MeshReport", "full_mesh_level", "load_mesh_levels", "mesh_report"]

MESH_LEVELS = (C.NUM_VERTICES, C.NUM_VERTICES_MID)  # 6890, 1723


@dataclass(frozen=True, eq=False)
class MeshLevel:
    """One level of the body mesh.

    Attributes:
        num_vertices: 6890 or 1723.
        vertex_index: (num_vertices,) int64 ids into the 6890 vertices, or None for the full mesh.
        faces: (F, 3) int64 triangles over the level's vertices (13776 for SMPL's 6890).
    """

    num_vertices: int
    vertex_index: np.ndarray | None
    faces: np.ndarray

    def vertices(self, vertices_full: np.ndarray) -> np.ndarray:
        """Return the level's (num_vertices, 3) vertices from the (6890, 3) mesh (any frame)."""
        vertices_full = np.asarray(vertices_full)
        return vertices_full if self.vertex_index is None else vertices_full[..., self.vertex_index, :]


@dataclass(frozen=True)
class MeshReport:
    """What a triangle list decodes to.

    Attributes:
        num_vertices, num_faces: counts (vertices: those the faces use).
        degenerate: triangles repeating a vertex.
        boundary_edges: edges of one triangle (0 for a closed surface).
        non_manifold_edges: edges of more than two triangles.
        misoriented_edges: interior edges both of whose triangles run them the same way.
        euler: V - E + F over the used vertices (2 per closed genus-0 component).
        components: connected components of the triangles.
    """

    num_vertices: int
    num_faces: int
    degenerate: int
    boundary_edges: int
    non_manifold_edges: int
    misoriented_edges: int
    euler: int
    components: int

    @property
    def closed_oriented_manifold(self) -> bool:
        """Every edge between exactly two triangles that run it in opposite directions; no degenerate one."""
        return not (self.degenerate or self.boundary_edges or self.non_manifold_edges or self.misoriented_edges)


def mesh_report(faces: np.ndarray, num_vertices: int) -> MeshReport:
    """Check a triangle list over ``num_vertices`` vertices.

    Raises:
        InputError: faces not (F, 3) integers in ``0..num_vertices - 1``.
    """
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu" or len(faces) == 0:
        raise InputError(f"faces: expected (F, 3) integer vertex indices, got {faces.dtype} shape {faces.shape}")
    faces = faces.astype(np.int64)
    if faces.min() < 0 or faces.max() >= num_vertices:
        raise InputError(f"faces: indices must lie in 0..{num_vertices - 1}, got {faces.min()}..{faces.max()}")
    degenerate = int(((faces[:, 0] == faces[:, 1]) | (faces[:, 1] == faces[:, 2]) | (faces[:, 0] == faces[:, 2])).sum())
    directed = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    undirected, per_edge = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    _, per_directed = np.unique(directed, axis=0, return_counts=True)
    used = np.unique(faces)
    adjacency = scipy.sparse.coo_matrix((np.ones(len(directed)), (directed[:, 0], directed[:, 1])),
                                        shape=(num_vertices, num_vertices))
    labels = scipy.sparse.csgraph.connected_components(adjacency, directed=False)[1]
    return MeshReport(
        num_vertices=len(used), num_faces=len(faces), degenerate=degenerate,
        boundary_edges=int((per_edge == 1).sum()), non_manifold_edges=int((per_edge > 2).sum()),
        misoriented_edges=int((per_directed > 1).sum()),  # a directed edge twice: both triangles run it alike
        euler=int(len(used) - len(undirected) + len(faces)), components=len(np.unique(labels[used])))


def full_mesh_level(faces: np.ndarray) -> MeshLevel:
    """Return the 6890-vertex level of the body's ``faces``."""
    return MeshLevel(C.NUM_VERTICES, None, np.asarray(faces, dtype=np.int64))


def load_mesh_levels(model_dir: str | Path, faces: np.ndarray) -> dict[int, MeshLevel]:
    """Both levels, keyed by vertex count: 6890 (``faces``) and 1723 (``mesh_downsampling.npz``).

    Args:
        model_dir: body model directory (``mesh_downsampling.npz``).
        faces: (13776, 3) triangles of the full mesh.

    Raises:
        InputError: the file's 1723-level triangles index outside the level or repeat a vertex.
    """
    from sahmr_ros.body.assets import load_downsampling_indices, load_mesh_downsampling

    path = Path(model_dir) / C.MESH_DOWNSAMPLING_FILENAME
    index_1723, _ = load_downsampling_indices(path)  # shapes and selections checked
    faces_1723 = np.asarray(load_mesh_downsampling(path)["F"][1]).astype(np.int64)
    report = mesh_report(faces_1723, C.NUM_VERTICES_MID)
    if report.degenerate:
        raise InputError(f"{path}: F[1] holds {report.degenerate} degenerate triangles (a vertex repeated); "
                         "get a good copy of the file (models/README.md)")
    return {C.NUM_VERTICES: full_mesh_level(faces),
            C.NUM_VERTICES_MID: MeshLevel(C.NUM_VERTICES_MID, index_1723, faces_1723)}
