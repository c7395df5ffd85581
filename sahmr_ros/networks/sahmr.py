"""SA-HMR: RCNet (root and contact) + the scene-aware mesh network, and the two presets.

Presets:

* ``official``: exactly the released architecture (HRNet-W64 trunks, SPVCNN widths of the paper,
  mesh blocks 1024/256/128), with the truncating sparse down-sampling the released weights saw;
  414 M parameters. Carries the official weights after checkpoint import.
* ``small``: the same design with light backbones and narrow blocks (a few M parameters), floor
  down-sampling; for CPU tests, the embedded demo and training from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.networks.hrnet import HRNet, HRNetConfig
from sahmr_ros.networks.mesh_network import MeshNetwork, MeshNetworkConfig, MeshNetworkOutput
from sahmr_ros.networks.precision import at_least_float32, full_precision
from sahmr_ros.networks.rcnet import (
    ContactEstimate,
    RCNet,
    RCNetConfig,
    RootEstimate,
    fixed_size_contacts_batch,
    select_roi,
)
from sahmr_ros.networks.spvcnn import SPVCNNConfig

__all__ = ["PRESETS", "SAHMRConfig", "SAHMR", "MeshEstimate"]

PRESETS = ("official", "small")


@dataclass(frozen=True)
class SAHMRConfig:
    """Architecture of the whole model."""

    preset: str
    rcnet: RCNetConfig
    mesh_backbone: HRNetConfig
    mesh: MeshNetworkConfig

    @classmethod
    def official(cls) -> "SAHMRConfig":
        return cls(
            preset="official",
            rcnet=RCNetConfig(HRNetConfig.w64(), SPVCNNConfig.official(), rounding="trunc"),
            mesh_backbone=HRNetConfig.w64(),
            mesh=MeshNetworkConfig.official(),
        )

    @classmethod
    def small(cls) -> "SAHMRConfig":
        return cls(
            preset="small",
            rcnet=RCNetConfig(HRNetConfig.small(), SPVCNNConfig.small(), rounding="floor"),
            mesh_backbone=HRNetConfig.small(),
            mesh=MeshNetworkConfig.small(),
        )

    @classmethod
    def from_preset(cls, name: str) -> "SAHMRConfig":
        if name not in PRESETS:
            raise InputError(f"preset: unknown {name!r}; choose one of {', '.join(PRESETS)}")
        return getattr(cls, name)()


@dataclass
class MeshEstimate:
    """Mesh network output moved to the camera frame.

    Attributes:
        vertices_camera: (B, 6890, 3) = root-relative prediction + refined root, float32 (or
            float64) whatever precision the network ran in.
        joints14_camera: (B, 14, 3) H36M regressor on ``vertices_camera``, same dtype.
        contact_points_input: (B, 500, 3) root-relative contact points fed to the network.
        contact_labels_input: (B, 500) their labels (0 = padding).
        network: the raw :class:`MeshNetworkOutput` (root-relative).
    """

    vertices_camera: torch.Tensor
    joints14_camera: torch.Tensor
    contact_points_input: torch.Tensor
    contact_labels_input: torch.Tensor
    network: MeshNetworkOutput


def _cpu_tensor(x, dtype: torch.dtype) -> torch.Tensor:
    """Body data as a CPU tensor, also under a ``torch.device("meta")`` context (shape-only builds)."""
    return torch.as_tensor(x, dtype=dtype, device="cpu")


class SAHMR(nn.Module):
    """The whole model. Body assets give the template, part ids and joint regressor.

    Args:
        config: architecture (see :class:`SAHMRConfig`).
        body: :class:`sahmr_ros.body.BodyAssets` (real SMPL or the synthetic body).
    """

    def __init__(self, config: SAHMRConfig, body):
        super().__init__()
        self.config = config
        self.rcnet = RCNet(config.rcnet)
        self.mesh_network = MeshNetwork(
            config.mesh,
            HRNet(config.mesh_backbone, head="features"),
            _cpu_tensor(body.template_joints14, torch.float32),
            _cpu_tensor(body.template_vertices431, torch.float32),
            _cpu_tensor(body.part_ids_431, torch.int64),
        )
        j14 = _cpu_tensor(body.j_regressor_h36m, torch.float32)[list(C.H36M_J17_TO_J14)]
        self.register_buffer("j_regressor14", j14, persistent=False)  # (14, 6890)

    def network_layers(self) -> list[nn.Module]:
        """Return the parts that run entirely under autocast: the two image trunks and the transformer.

        What :func:`~sahmr_ros.networks.precision.store_weights_in` may convert for half-precision
        inference. Not included: the sparse CNN (its geometry and point-voxel maps mix precisions)
        and the layers that output geometry in float32 (the depth head, the vertex upsampling).
        """
        mesh = self.mesh_network
        return [self.rcnet.root_net.hrnet, mesh.backbone, mesh.conv_learn_tokens, mesh.trans_encoder]

    # -- stages, called one by one by the pipeline (the scene query sits between 1 and 2) --------
    def estimate_root(self, crops, bbx_lurb, K) -> RootEstimate:
        """Stage 1: coarse root + image features. See :meth:`RCNet.estimate_root`."""
        return self.rcnet.estimate_root(crops, bbx_lurb, K)

    def estimate_contacts(self, root: RootEstimate, roi_points, bbx_lurb, K) -> ContactEstimate:
        """Stage 2: refined root + contact points. See :meth:`RCNet.estimate_contacts`."""
        return self.rcnet.estimate_contacts(root, roi_points, bbx_lurb, K)

    def estimate_mesh(self, crops: torch.Tensor, contacts: ContactEstimate) -> MeshEstimate:
        """Stage 3: the scene-aware mesh in the camera frame.

        Args:
            crops: (B, 3, 224, 224) in [0, 1].
            contacts: stage 2 output for the same B persons.
        """
        root = at_least_float32(contacts.root_camera)  # (B, 3)
        with full_precision(root.device):  # root-relative contact points: float32 or better
            pts, labels = fixed_size_contacts_batch(  # (B, 500, 3), (B, 500)
                [at_least_float32(p) for p in contacts.contact_points], contacts.contact_labels, origin=root
            )
        out = self.mesh_network(crops, pts.to(crops.dtype), labels)  # in the caller's precision
        with full_precision(root.device):  # camera-frame vertices and joints: float32 or better
            vertices = at_least_float32(out.vertices) + root[:, None, :]
            joints = torch.einsum("jv,bvc->bjc", self.j_regressor14.to(vertices.dtype), vertices)
        return MeshEstimate(vertices, joints, pts, labels, out)

    def forward(self, crops, bbx_lurb, K, frustum_points: list[torch.Tensor]):
        """All three stages on frustum points already in the camera frame (training / evaluation).

        ROI selection follows the official code: the points within 1.25 m of any anchor, or all
        frustum points when none is that close.

        Returns:
            (RootEstimate, ContactEstimate, MeshEstimate).
        """
        root = self.estimate_root(crops, bbx_lurb, K)
        roi = []
        for b, pts in enumerate(frustum_points):
            keep = select_roi(pts, root.root_camera[b].to(pts.dtype))
            roi.append(pts[keep] if keep.any() else pts)
        contacts = self.estimate_contacts(root, roi, bbx_lurb, K)
        return root, contacts, self.estimate_mesh(crops, contacts)
