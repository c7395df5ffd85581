"""Lighter meshes: each mesh level decodes to a valid body mesh; the marker rate thins out mesh markers."""

from __future__ import annotations

import numpy as np
import pytest

from sahmr_ros import constants as C
from sahmr_ros.body import load_body_assets
from sahmr_ros.body.mesh_levels import load_mesh_levels, mesh_report
from sahmr_ros.errors import InputError
from sahmr_ros.ros.conversions import mesh_markers
from sahmr_ros.ros.interfaces import make_typestore
from sahmr_ros.ros.mesh_output import MeshMarkerSchedule, build_mesh_markers
from sahmr_ros.ros.messages import RosbagsFactory, ns_to_time


@pytest.fixture(scope="module")
def body(synthetic_model_dir):
    return load_body_assets(synthetic_model_dir)


@pytest.fixture(scope="module")
def levels(synthetic_model_dir, body):
    return load_mesh_levels(synthetic_model_dir, body.faces)


def _signed_volume(vertices, faces):
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6)


def _naive_report(faces, n):
    """Edge bookkeeping with Python dicts, independent of mesh_report's numpy."""
    undirected, directed = {}, {}
    for f in faces.tolist():
        for a, b in ((f[0], f[1]), (f[1], f[2]), (f[2], f[0])):
            undirected[frozenset((a, b))] = undirected.get(frozenset((a, b)), 0) + 1
            directed[(a, b)] = directed.get((a, b), 0) + 1
    used = {v for f in faces.tolist() for v in f}
    return len(used) - len(undirected) + len(faces), sum(c == 1 for c in undirected.values()), \
        sum(c > 1 for c in directed.values())


@pytest.mark.parametrize("n", [C.NUM_VERTICES, C.NUM_VERTICES_MID])
def test_each_level_decodes_to_a_closed_consistently_oriented_body(body, levels, n):
    level = levels[n]
    vertices = level.vertices(body.template_vertices.astype(np.float64))
    assert vertices.shape == (n, 3) and level.num_vertices == n
    report = mesh_report(level.faces, n)
    assert report.num_vertices == n  # every vertex of the level is used by a triangle
    assert report.closed_oriented_manifold, report
    assert report.euler == 2 and report.components == 1  # one closed genus-0 surface, as the full body
    assert (report.euler, report.boundary_edges, report.misoriented_edges) == _naive_report(level.faces, n)
    edges = [vertices[level.faces[:, i]] - vertices[level.faces[:, 0]] for i in (1, 2)]
    areas = np.linalg.norm(np.cross(*edges), axis=1)
    assert areas.min() > 0  # no zero-area triangle in space either
    full_volume = _signed_volume(body.template_vertices.astype(np.float64), body.faces)
    assert np.sign(_signed_volume(vertices, level.faces)) == np.sign(full_volume)  # wound like the full mesh
    assert abs(_signed_volume(vertices, level.faces)) > 0.5 * abs(full_volume)  # the same body, coarser


def test_the_middle_level_selects_vertices_of_the_full_mesh(body, levels):
    level = levels[C.NUM_VERTICES_MID]
    np.testing.assert_array_equal(level.vertex_index, body.index_1723)
    np.testing.assert_array_equal(level.vertices(body.template_vertices), body.template_vertices[body.index_1723])
    # mapping the full triangles through the selection keeps almost none: the file's F[1] is needed
    inverse = np.full(C.NUM_VERTICES, -1)
    inverse[level.vertex_index] = np.arange(C.NUM_VERTICES_MID)
    assert ((inverse[body.faces] >= 0).all(1)).sum() < 0.01 * len(level.faces)


def test_mesh_report_finds_what_is_wrong():
    tetra = np.array([[0, 2, 1], [0, 1, 3], [1, 2, 3], [0, 3, 2]])
    assert mesh_report(tetra, 4).closed_oriented_manifold and mesh_report(tetra, 4).euler == 2
    flipped = tetra.copy()
    flipped[0] = flipped[0, ::-1]
    assert mesh_report(flipped, 4).misoriented_edges == 3
    assert mesh_report(tetra[1:], 4).boundary_edges == 3
    assert mesh_report(np.vstack([tetra, [[0, 0, 1]]]), 4).degenerate == 1
    assert mesh_report(np.vstack([tetra, tetra + 4]), 8).components == 2
    with pytest.raises(InputError, match=r"indices must lie in 0..3"):
        mesh_report(tetra + 1, 4)


def test_marker_schedule_every_nth_frame_per_id():
    s = MeshMarkerSchedule(3)
    assert s.select([7]) == ([True], [])  # a new id is drawn at once
    assert s.select([7, 9]) == ([False, True], [])
    assert s.select([7, 9]) == ([False, False], [])
    assert s.select([7, 9]) == ([True, False], [])
    assert s.select([9]) == ([True], [7])  # 7 left: delete its marker; 9's third frame since it was drawn
    assert s.select([9, 7]) == ([False, True], [])  # 7 is back: drawn at once
    assert MeshMarkerSchedule(1).select([1, 2]) == ([True, True], [])
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="mesh_every_n: expected an integer >= 1"):
            MeshMarkerSchedule(bad)


def _person(vertices):
    from sahmr_ros.pipeline import PersonResult

    z = np.zeros(3, np.float32)
    return PersonResult(box_index=0, box_xyxy=np.zeros(4), score=1.0, root_map=z, root_camera=z,
                        coarse_root_camera=z, joints14_map=np.zeros((14, 3), np.float32),
                        vertices_map=vertices.astype(np.float32), contact_points_map=np.zeros((0, 3), np.float32),
                        contact_labels=np.zeros(0, np.int64), num_roi_voxels=0)


def test_markers_at_each_level_and_rate(body, levels):
    ts = make_typestore("jazzy")
    f = RosbagsFactory(ts)
    header = f.make("std_msgs/msg/Header", stamp=ns_to_time(f, 5), frame_id="map")
    persons = [_person(body.template_vertices + [i, 0, 0]) for i in range(2)]
    full = mesh_markers(f, header, persons, body.faces, ids=["3", "4"])
    same = build_mesh_markers(f, header, persons, levels[C.NUM_VERTICES], MeshMarkerSchedule(1), ids=["3", "4"])
    assert ts.serialize_cdr(same, "visualization_msgs/msg/MarkerArray") == \
        ts.serialize_cdr(full, "visualization_msgs/msg/MarkerArray")
    mid = levels[C.NUM_VERTICES_MID]
    light = build_mesh_markers(f, header, persons, mid, MeshMarkerSchedule(1), ids=["3", "4"])
    assert [m.action for m in light.markers] == [3, 0, 0] and [m.id for m in light.markers[1:]] == [3, 4]
    for marker, person in zip(light.markers[1:], persons):
        points = np.array([[p.x, p.y, p.z] for p in marker.points])
        want = person.vertices_map[mid.vertex_index][mid.faces].reshape(-1, 3)
        np.testing.assert_allclose(points, want, atol=1e-6)  # 3 points per triangle of the 1723 level
        assert len(points) == 3 * len(mid.faces)
    schedule = MeshMarkerSchedule(2)
    frames = [build_mesh_markers(f, header, persons[:k], mid, schedule, ids=["3", "4"][:k], lifetime_s=1.0)
              for k in (2, 2, 2, 1)]
    assert [[(m.id, m.action) for m in a.markers] for a in frames] == [
        [(3, 0), (4, 0)],  # no DELETEALL: markers not due stay on screen
        [],
        [(3, 0), (4, 0)],
        [(4, 2)],  # person 4 left: its marker is deleted; 3 is not due
    ]


def test_node_core_publishes_the_chosen_level_every_nth_frame(pipeline, demo_scene):
    """PerceptionCore with mesh_level 1723 and mesh_every_n 2: light markers on every other frame of each
    track, and HumanMeshArray still full on every frame."""
    from test_ros_core import _lookup, _messages

    from sahmr_ros.ros.core import FrameInput, NodeParams, PerceptionCore

    f = RosbagsFactory(make_typestore())
    core = PerceptionCore(pipeline, NodeParams(mesh_level=C.NUM_VERTICES_MID, mesh_every_n=2), f)
    image, info, dets, stamp = _messages(f, demo_scene)
    shown, humans = [], []
    for k in range(4):
        out = core.handle(FrameInput(image, info, dets, stamp + k * 100_000_000), _lookup(demo_scene))
        assert out.error is None
        shown.append([(m.action, len(m.points)) for m in out.markers.markers])
        humans.append([len(h.vertices) // 3 for h in out.humans.humans])
    faces = len(pipeline.mesh_levels[C.NUM_VERTICES_MID].faces)
    assert shown == [[(0, 3 * faces)] * 2, [], [(0, 3 * faces)] * 2, []]
    assert humans == [[C.NUM_VERTICES] * 2] * 4
    with pytest.raises(InputError, match="mesh_level: 100 unknown; choose 6890 or 1723"):
        NodeParams(mesh_level=100)
    with pytest.raises(InputError, match="mesh_every_n: expected an integer >= 1"):
        NodeParams(mesh_every_n=0)
