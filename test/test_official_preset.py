"""The `official` preset builds with the released architecture and runs one forward on CPU."""

from __future__ import annotations

import numpy as np
import torch

from sahmr_ros import constants as C
from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig


def test_official_preset_forward_batch_2_on_cpu(synthetic_model_dir):
    from sahmr_ros.body import load_body_assets

    body = load_body_assets(synthetic_model_dir)
    torch.manual_seed(0)
    model = SAHMR(SAHMRConfig.official(), body).eval()
    n_params = sum(p.numel() for p in model.parameters())
    # 414,398,945 official parameters minus the never-used BERT embeddings/pooler and classifier
    assert 300e6 < n_params < 414_398_945
    assert model.rcnet.contact_net.rounding == "trunc"

    g = torch.Generator().manual_seed(0)
    crops = torch.rand(2, 3, 224, 224, generator=g)
    bbx = torch.tensor([[100.0, 50.0, 330.0, 280.0], [300.0, 80.0, 420.0, 200.0]], dtype=torch.float64)
    K = torch.tensor([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]], dtype=torch.float64).expand(2, 3, 3)
    frustum = [torch.rand(3000, 3, generator=g) * torch.tensor([4.0, 3.0, 4.0]) + torch.tensor([-2.0, -1.5, 1.0])
               for _ in range(2)]
    with torch.inference_mode():
        root, contacts, mesh = model(crops, bbx, K, frustum)
    assert root.root_camera.shape == (2, 3)
    assert mesh.vertices_camera.shape == (2, C.NUM_VERTICES, 3)
    assert mesh.joints14_camera.shape == (2, 14, 3)
    assert mesh.contact_points_input.shape == (2, C.NUM_CONTACT_POINTS, 3)
    assert int(contacts.num_voxels.sum()) > 0
    assert np.isfinite(mesh.vertices_camera.numpy()).all()
