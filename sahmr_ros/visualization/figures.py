"""The pictures sahmr_ros draws: result figures (``sahmr demo``, ``sahmr infer``) and evaluation plots.

* :func:`write_result_figure`: the camera image with each person's estimated mesh filled
  semi-transparently with its outline, and the person boxes (left); the map seen from above (right):
  the room points as a height map (floor light grey, furniture darker, walls darkest), the camera
  and its viewing direction, ground-truth roots (stars), estimated roots (crosses) and the contact
  points coloured by body part (``constants.CONTACT_PART_COLORS``).
* :func:`plot_sample_grid`: the same two panels for several samples (e.g. the worst and median).
* :func:`plot_error_cdfs`: cumulative distributions of per-sample errors, one line per metric.
* :func:`plot_contact_parts`: contact precision and recall per body part.

Frames: meshes for the overlay are in the camera optical frame (x right, y down, z forward) and are
drawn with the renderer's coverage (:func:`sahmr_ros.visualization.render.silhouettes`), so what the
figure shows is exactly what the camera model projects; the top view is the map frame (REP-103) seen
from above, x right and y up on the page.

All figures are drawn on matplotlib's Agg canvas without pyplot (no global backend state) and
written as PNG files of exactly the requested pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from sahmr_ros.constants import CONTACT_PART_COLORS, CONTACT_PART_NAMES
from sahmr_ros.errors import InputError

__all__ = [
    "ImageOverlay",
    "SamplePanel",
    "TopView",
    "overlay_meshes",
    "plot_contact_parts",
    "plot_error_cdfs",
    "plot_sample_grid",
    "write_result_figure",
]

PERSON_COLORS = ((255, 80, 80), (80, 170, 255), (120, 220, 90), (250, 190, 40), (200, 110, 240))
_MESH_ALPHA = 0.45
_TOP_VIEW_CELL_M = 0.04  # top-view raster of the room points
_CAMERA_ARROW_M = 0.7


@dataclass
class ImageOverlay:
    """The left panel: a camera image with estimated meshes and person boxes.

    Attributes:
        image: (H, W, 3) uint8 camera image.
        K: (3, 3) intrinsics of the image, pixels.
        meshes_camera: per person, the mesh vertices (V, 3) in the camera optical frame, metres, or
            None for no mesh.
        faces: (F, 3) mesh faces (SMPL topology); may be None when there are no meshes.
        boxes: (N, 4) person boxes ``x0, y0, x1, y1`` in pixels.
        distortion, distortion_model: lens distortion of the image (``render.pixel_rays``); None for
            an undistorted image.
    """

    image: np.ndarray
    K: np.ndarray
    meshes_camera: Sequence[np.ndarray | None] = ()
    faces: np.ndarray | None = None
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    distortion: np.ndarray | None = None
    distortion_model: str | None = None


@dataclass
class TopView:
    """The right panel: the map frame seen from above.

    Attributes:
        room_points_map: (M, 3) scene points, map frame, metres.
        camera_position_map: (3,) camera centre, map frame.
        camera_forward_map: (3,) optical axis direction, map frame.
        gt_roots_map: (G, 3) ground-truth roots (G may be 0).
        est_roots_map: (N, 3) estimated roots; a non-finite row (a person without an estimate) is not
            drawn, so row i keeps person i's colour.
        contact_points_map: per person, (k, 3) contact points, map frame.
        contact_labels: per person, (k,) labels in 0..7 (``constants.CONTACT_PART_NAMES``).
    """

    room_points_map: np.ndarray
    camera_position_map: np.ndarray
    camera_forward_map: np.ndarray
    gt_roots_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    est_roots_map: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    contact_points_map: Sequence[np.ndarray] = ()
    contact_labels: Sequence[np.ndarray] = ()


@dataclass
class SamplePanel:
    """One sample of :func:`plot_sample_grid`: its image panel, top view and a title."""

    overlay: ImageOverlay
    top_view: TopView
    title: str = ""


# ------------------------------------------------------------------------------------------------
# checks and colours
# ------------------------------------------------------------------------------------------------
def _points(name: str, value, width: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, width)
    if array.ndim != 2 or array.shape[1] != width:
        raise InputError(f"{name}: expected shape (N, {width}), got {array.shape}")
    return array


def _vector3(name: str, value) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.shape != (3,):
        raise InputError(f"{name}: expected shape (3,), got {np.shape(value)}")
    return array


def _check_image(name: str, image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"{name}: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
    return image


def _person_color(i: int, scale: float = 255.0) -> tuple[float, float, float]:
    return tuple(c / 255.0 * scale for c in PERSON_COLORS[i % len(PERSON_COLORS)])


def _new_figure(size_px: tuple[int, int], dpi: int) -> Figure:
    # A bare Figure on an Agg canvas: no pyplot, so no global backend state and nothing to close.
    if len(size_px) != 2 or min(size_px) <= 0:
        raise InputError(f"size_px: expected (width, height) > 0 pixels, got {size_px}")
    fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path, dpi: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    return path


# ------------------------------------------------------------------------------------------------
# the two panels
# ------------------------------------------------------------------------------------------------
def overlay_meshes(overlay: ImageOverlay) -> tuple[np.ndarray, list[np.ndarray | None]]:
    """Blend each person's mesh coverage into the image.

    Returns:
        The blended (H, W, 3) uint8 image, and per person the (H, W) bool coverage (None for no
        mesh). Faces with a non-finite vertex are left out (a broken estimate still draws).
    """
    from sahmr_ros.visualization.render import silhouettes

    image = _check_image("overlay.image", overlay.image)
    height, width = image.shape[:2]
    blended = image.astype(np.float64)
    masks: list[np.ndarray | None] = []
    for i, vertices in enumerate(overlay.meshes_camera):
        if vertices is None:
            masks.append(None)
            continue
        vertices = _points(f"overlay.meshes_camera[{i}]", vertices, 3)
        faces = np.asarray(overlay.faces)
        if faces.ndim != 2 or faces.shape[1] != 3 or (len(faces) and faces.max() >= len(vertices)):
            raise InputError(f"overlay.faces: expected (F, 3) indices into {len(vertices)} vertices, got "
                             f"{faces.shape}")
        faces = faces[np.isfinite(vertices[faces]).all(axis=(1, 2))]
        mask = silhouettes([(np.nan_to_num(vertices), faces)], overlay.K, np.eye(4), width, height,
                           distortion=overlay.distortion, distortion_model=overlay.distortion_model)[0]
        blended[mask] = (1 - _MESH_ALPHA) * blended[mask] + _MESH_ALPHA * np.array(_person_color(i))
        masks.append(mask)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8), masks


def _draw_overlay(ax, overlay: ImageOverlay, title: str, fontsize: float = 9) -> None:
    shown, masks = overlay_meshes(overlay)
    boxes = _points("overlay.boxes", overlay.boxes, 4)
    ax.imshow(shown, interpolation="nearest")
    for i, mask in enumerate(masks):
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors=[_person_color(i, 1.0)], linewidths=1.0)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=1.5,
                               edgecolor=_person_color(i, 1.0)))
        ax.text(x0, y0 - 4, f"person {i}", color=_person_color(i, 1.0), fontsize=fontsize, va="bottom")
    ax.set_xlim(-0.5, shown.shape[1] - 0.5)
    ax.set_ylim(shown.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    ax.set_title(title, fontsize=fontsize + 1)


def _top_view_points(ax, room_points: np.ndarray) -> None:
    """Draw the room points from above as a height map.

    One grey cell per occupied top-view cell, darker where the highest point in it is higher (floor
    light, furniture mid, walls dark).
    """
    if len(room_points) == 0:
        return
    cells = np.floor(room_points[:, :2] / _TOP_VIEW_CELL_M).astype(np.int64)
    lo = cells.min(axis=0)
    cells -= lo
    shape = cells.max(axis=0) + 1
    height = np.full(shape, -np.inf)
    np.maximum.at(height, (cells[:, 0], cells[:, 1]), room_points[:, 2])
    grey = 0.88 - 0.5 * np.clip(height / 1.5, 0.0, 1.0)
    rgba = np.ones((*shape, 4))
    rgba[..., :3] = grey[..., None]
    rgba[np.isinf(height)] = (1.0, 1.0, 1.0, 0.0)
    x0, y0 = lo * _TOP_VIEW_CELL_M
    x1, y1 = (lo + shape) * _TOP_VIEW_CELL_M
    # imshow rows are the first axis: transpose so that rows run along map y, origin at the bottom.
    ax.imshow(rgba.transpose(1, 0, 2), origin="lower", extent=(x0, x1, y0, y1),
              interpolation="nearest", zorder=1)


def _draw_top_view(ax, top: TopView, title: str, fontsize: float = 9, marker_scale: float = 1.0) -> None:
    room_points = _points("top_view.room_points_map", top.room_points_map, 3)
    gt_roots = _points("top_view.gt_roots_map", top.gt_roots_map, 3)
    est_roots = _points("top_view.est_roots_map", top.est_roots_map, 3)
    camera = _vector3("top_view.camera_position_map", top.camera_position_map)
    forward = _vector3("top_view.camera_forward_map", top.camera_forward_map)
    if len(top.contact_points_map) != len(top.contact_labels):
        raise InputError(f"top_view.contact_points_map, contact_labels: lengths differ "
                         f"({len(top.contact_points_map)} vs {len(top.contact_labels)})")

    _top_view_points(ax, room_points)
    direction = forward[:2]
    if np.linalg.norm(direction) > 1e-9:
        direction = direction / np.linalg.norm(direction) * _CAMERA_ARROW_M
        ax.annotate("", xy=camera[:2] + direction, xytext=camera[:2], zorder=4,
                    arrowprops=dict(arrowstyle="->", color="black", linewidth=1.5))
    ax.plot(*camera[:2], marker="s", color="black", markersize=7 * marker_scale, linestyle="", zorder=4)
    for i, (points_i, labels) in enumerate(zip(top.contact_points_map, top.contact_labels)):
        points_i = _points(f"top_view.contact_points_map[{i}]", points_i, 3)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) != len(points_i):
            raise InputError(f"top_view.contact_labels[{i}]: expected {len(points_i)} labels, got {len(labels)}")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(CONTACT_PART_NAMES)):
            raise InputError(f"top_view.contact_labels[{i}]: labels outside 0..{len(CONTACT_PART_NAMES) - 1}")
        colors = np.asarray(CONTACT_PART_COLORS, dtype=np.float64)[labels] / 255.0
        ax.scatter(points_i[:, 0], points_i[:, 1], c=colors, s=10 * marker_scale, linewidths=0, zorder=3)
    for i, root in enumerate(gt_roots):
        ax.plot(*root[:2], marker="*", markersize=14 * marker_scale, color=_person_color(i, 1.0),
                markeredgecolor="black", linestyle="", zorder=5)
    for i, root in enumerate(est_roots):
        if not np.isfinite(root).all():
            continue
        ax.plot(*root[:2], marker="x", markersize=11 * marker_scale, markeredgewidth=2.5 * marker_scale,
                color=_person_color(i, 1.0), linestyle="", zorder=6)

    extent = [room_points[:, :2]] if len(room_points) else []
    est_drawn = est_roots[np.isfinite(est_roots).all(axis=1)]
    extent = np.concatenate(extent + [camera[None, :2], gt_roots[:, :2], est_drawn[:, :2]])
    lo, hi = extent.min(axis=0) - 0.3, extent.max(axis=0) + 0.3
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("map x [m]", fontsize=fontsize)
    ax.set_ylabel("map y [m]", fontsize=fontsize)
    ax.set_title(title, fontsize=fontsize + 1)
    ax.tick_params(labelsize=fontsize - 1)


def _legend_handles(with_gt: bool) -> list[Line2D]:
    handles = [Line2D([], [], marker="*", markersize=12, color="grey", markeredgecolor="black",
                      linestyle="", label="ground-truth root")] if with_gt else []
    handles += [
        Line2D([], [], marker="x", markersize=9, markeredgewidth=2.5, color="grey", linestyle="",
               label="estimated root"),
        Line2D([], [], marker="s", color="black", linestyle="", label="camera"),
    ]
    handles += [Line2D([], [], marker="o", markersize=7, linestyle="", label=name,
                       color=np.asarray(CONTACT_PART_COLORS[label]) / 255.0)
                for label, name in enumerate(CONTACT_PART_NAMES) if label > 0]
    return handles


# ------------------------------------------------------------------------------------------------
# figures
# ------------------------------------------------------------------------------------------------
def write_result_figure(
    path,
    overlay: ImageOverlay,
    top_view: TopView,
    title_lines: Sequence[str],
    *,
    size_px: tuple[int, int] = (1400, 640),
    dpi: int = 100,
) -> Path:
    """Write the two-panel result figure (module docstring) as a PNG of exactly ``size_px`` pixels.

    Args:
        path: output PNG path (parent folders are created).
        overlay: the camera image with the estimated meshes and boxes.
        top_view: the room, camera, roots and contacts in the map frame.
        title_lines: text printed above the panels, one line each.
        size_px: (width, height) of the figure in pixels.
        dpi: resolution used to convert ``size_px`` to inches.

    Returns:
        The path written.

    Raises:
        InputError: an input of the wrong shape or type (the message names the field).
    """
    _check_image("overlay.image", overlay.image)
    fig = _new_figure(size_px, dpi)
    title_space = 0.045 * max(1, len(title_lines)) + 0.02
    fig.text(0.01, 0.99, "\n".join(title_lines), va="top", ha="left", fontsize=11, family="monospace")
    top = 1.0 - title_space
    _draw_overlay(fig.add_axes((0.005, 0.02, 0.49, top - 0.03)), overlay, "camera image + estimated mesh")
    _draw_top_view(fig.add_axes((0.53, 0.08, 0.31, top - 0.12)), top_view, "top view (map frame)")
    fig.legend(handles=_legend_handles(len(np.asarray(top_view.gt_roots_map).reshape(-1)) > 0),
               loc="center left", bbox_to_anchor=(0.84, 0.45), fontsize=9, title="contact parts / markers",
               title_fontsize=9, frameon=False)
    return _save(fig, path, dpi)


def plot_sample_grid(
    samples: Sequence[SamplePanel],
    path,
    *,
    columns: int = 2,
    panel_px: tuple[int, int] = (440, 330),
    title: str = "",
    dpi: int = 100,
) -> Path:
    """Write a grid of samples, each as its image overlay and top view side by side.

    Args:
        samples: the samples, in reading order (e.g. the worst, then the median ones).
        path: output PNG path.
        columns: samples per row (each takes two panels).
        panel_px: (width, height) of one panel in pixels; the figure is ``2 * columns * width`` by
            ``rows * height`` plus a legend strip and the title.
        title: text above the grid.
        dpi: resolution used to convert pixels to inches.

    Returns:
        The path written.
    """
    if not samples:
        raise InputError("samples: expected at least one sample")
    if int(columns) != columns or columns < 1:
        raise InputError(f"columns: expected a positive integer, got {columns}")
    columns = min(int(columns), len(samples))
    rows = -(-len(samples) // columns)
    title_px, legend_px = (40 if title else 0), 60
    width = 2 * columns * panel_px[0]
    height = rows * panel_px[1] + title_px + legend_px
    fig = _new_figure((width, height), dpi)
    if title:
        fig.text(0.5, 1.0 - 8 / height, title, va="top", ha="center", fontsize=12)
    cell_w, cell_h = 1.0 / (2 * columns), panel_px[1] / height
    for k, sample in enumerate(samples):
        row, column = divmod(k, columns)
        bottom = 1.0 - title_px / height - (row + 1) * cell_h
        left = 2 * column * cell_w
        heading = f"{sample.title}" if sample.title else f"sample {k}"
        _draw_overlay(fig.add_axes((left + 0.005, bottom + 0.02 * cell_h, cell_w - 0.01, 0.86 * cell_h)),
                      sample.overlay, heading, fontsize=8)
        _draw_top_view(fig.add_axes((left + cell_w + 0.035 * cell_w, bottom + 0.14 * cell_h, 0.9 * cell_w,
                                     0.72 * cell_h)), sample.top_view, "top view", fontsize=7, marker_scale=0.7)
    fig.legend(handles=_legend_handles(True), loc="lower center", ncol=5, fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    return _save(fig, path, dpi)


def plot_error_cdfs(
    values: Mapping[str, np.ndarray],
    unit: str,
    path,
    *,
    title: str = "",
    size_px: tuple[int, int] = (800, 500),
    dpi: int = 100,
) -> Path:
    """Write the cumulative distribution of per-sample errors, one line per metric.

    Args:
        values: metric name -> (N,) per-sample errors in ``unit`` (NaN entries are left out and
            counted in the legend).
        unit: the values' unit, shown on the x axis (e.g. ``"mm"``).
        path: output PNG path.
        title: text above the plot.
        size_px: (width, height) of the figure in pixels.
        dpi: resolution used to convert pixels to inches.

    Returns:
        The path written.
    """
    if not values:
        raise InputError("values: expected at least one metric")
    fig = _new_figure(size_px, dpi)
    ax = fig.add_axes((0.1, 0.12, 0.86, 0.78 if title else 0.84))
    right = 0.0
    for name, raw in values.items():
        data = np.asarray(raw, dtype=np.float64).reshape(-1)
        finite = np.sort(data[np.isfinite(data)])
        missing = len(data) - len(finite)
        if len(finite) == 0:
            ax.plot([], [], label=f"{name}: no finite values ({missing} NaN)")
            continue
        share = np.arange(1, len(finite) + 1) / len(data)  # NaN samples never count as below a threshold
        label = f"{name}: median {np.median(finite):.1f} {unit}, n={len(finite)}"
        label += f" ({missing} NaN)" if missing else ""
        ax.step(np.concatenate([[min(0.0, finite[0])], finite]), np.concatenate([[0.0], share]), where="post",
                label=label, linewidth=1.8)
        right = max(right, float(np.percentile(finite, 98)))
    ax.set_xlim(left=0.0, right=right * 1.05 if right > 0 else None)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel(f"error [{unit}]")
    ax.set_ylabel("share of samples with error <= x")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    if title:
        ax.set_title(title, fontsize=11)
    return _save(fig, path, dpi)


def plot_contact_parts(
    precision: Mapping[str, float],
    recall: Mapping[str, float],
    path,
    *,
    title: str = "",
    size_px: tuple[int, int] = (800, 450),
    dpi: int = 100,
) -> Path:
    """Write per-part contact precision and recall as grouped bars.

    Args:
        precision: part name (``constants.CONTACT_PART_NAMES`` 1..7, or any name, e.g. ``overall``)
            -> precision in [0, 1]; NaN where the part was never predicted.
        recall: part name -> recall in [0, 1]; NaN where the part never touched anything.
        path: output PNG path.
        title: text above the plot.
        size_px: (width, height) of the figure in pixels.
        dpi: resolution used to convert pixels to inches.

    Returns:
        The path written.
    """
    names = list(precision) + [name for name in recall if name not in precision]
    if not names:
        raise InputError("precision, recall: expected at least one part")
    p = np.array([precision.get(name, np.nan) for name in names], dtype=np.float64)
    r = np.array([recall.get(name, np.nan) for name in names], dtype=np.float64)
    if np.any((p < 0) | (p > 1)) or np.any((r < 0) | (r > 1)):
        raise InputError("precision, recall: expected values in [0, 1] (or NaN)")
    fig = _new_figure(size_px, dpi)
    ax = fig.add_axes((0.08, 0.2, 0.9, 0.7 if title else 0.75))
    x = np.arange(len(names))
    colors = [np.asarray(CONTACT_PART_COLORS[CONTACT_PART_NAMES.index(name)]) / 255.0
              if name in CONTACT_PART_NAMES else (0.4, 0.4, 0.4) for name in names]
    ax.bar(x - 0.2, np.nan_to_num(p), width=0.4, color=colors, edgecolor="black", label="precision")
    ax.bar(x + 0.2, np.nan_to_num(r), width=0.4, color=colors, edgecolor="black", hatch="//", alpha=0.6,
           label="recall")
    for xs, vals in ((x - 0.2, p), (x + 0.2, r)):
        for xi, v in zip(xs, vals):
            ax.text(xi, (0.0 if np.isnan(v) else v) + 0.01, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center",
                    va="bottom", fontsize=7)
    ax.set_xticks(x, [name.replace("_", " ") for name in names], rotation=20, fontsize=9)
    ax.set_ylim(0.0, 1.1)
    ax.set_ylabel("share")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(loc="upper right", fontsize=9, handles=[
        Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", label="precision"),
        Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="black", hatch="//", label="recall")])
    if title:
        ax.set_title(title, fontsize=11)
    return _save(fig, path, dpi)
