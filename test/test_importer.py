"""Official checkpoint import: every key of the reference list, layouts, strict load, refusals."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import infer_args

from sahmr_ros.checkpoint import load_checkpoint
from sahmr_ros.errors import CheckpointError
from sahmr_ros.importer import UNUSED_OFFICIAL_KEY_PARTS, import_checkpoint

OFFSETS3 = [(ix, iy, iz) for iz in range(3) for iy in range(3) for ix in range(3)]  # torchsparse: x fastest
OFFSETS2 = [(ix, iy, iz) for ix in range(2) for iy in range(2) for iz in range(2)]  # torchsparse: z fastest


def _reference(shared_dir):
    entries = {}
    for line in (shared_dir / "reference" / "sahmr_official_state_dict.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        key, shape, dtype = line.split("\t")
        entries[key] = (tuple(int(x) for x in shape.strip("()").split(",") if x.strip()), getattr(torch, dtype))
    return entries


@pytest.fixture(scope="module")
def official_pth(shared_dir, tmp_path_factory):
    """A release-format checkpoint of random tensors with every official key and shape (1.7 GB)."""
    g = torch.Generator().manual_seed(0)
    network = {}
    for key, (shape, dtype) in _reference(shared_dir).items():
        if key.endswith("running_var"):  # variances are positive in any real checkpoint
            network[key] = torch.rand(shape, generator=g, dtype=dtype) + 0.5
        elif dtype.is_floating_point:
            network[key] = torch.randn(shape, generator=g, dtype=dtype) * 0.05
        else:
            network[key] = torch.randint(0, 1000, shape, generator=g, dtype=dtype)
    path = tmp_path_factory.mktemp("official") / "sahmr_rich_e30.pth"
    torch.save({"network": network, "epoch": 30}, path)
    return path, network


@pytest.fixture(scope="module")
def imported(official_pth, tmp_path_factory):
    path, _ = official_pth
    out = import_checkpoint(path, tmp_path_factory.mktemp("ours") / "sahmr_rich.pt")
    return load_checkpoint(out, expected_preset="official")


def test_every_tensor_equals_its_source_after_the_layout_transform(official_pth, imported):
    _, network = official_pth
    state = imported["state_dict"]
    used = {k: v for k, v in network.items() if not any(p in k for p in UNUSED_OFFICIAL_KEY_PARTS)}
    assert len(state) == len(used) == 4414
    checked = 0
    for key, src in used.items():
        k = key[len("net."):]
        if k.endswith(".kernel"):
            stem = k[: -len(".kernel")]
            if src.dim() == 2:  # 1x1x1: (Cin, Cout) -> Linear (Cout, Cin)
                assert torch.equal(state[stem + ".weight"], src.T)
            else:  # out[o] = sum_k in[o + off_k] W[k]; spconv indexes (Cout, ix, iy, iz, Cin)
                w = state[stem + ".conv.weight"]
                for idx, (ix, iy, iz) in enumerate(OFFSETS3 if src.shape[0] == 27 else OFFSETS2):
                    assert torch.equal(w[:, ix, iy, iz, :], src[idx].T)
        else:
            k = k.replace("metro_enhanced.", "mesh_network.", 1)
            k = k.replace(".bert.encoder.linear_cp.", ".bert.encoder.contact_self_attn.")
            k = k.replace(".bert.encoder.loftr_layer.", ".bert.encoder.cross_attn.")
            assert torch.equal(state[k], src), key
        checked += 1
    assert checked == 4414


def test_metadata_records_the_source(official_pth, imported):
    import hashlib

    path, _ = official_pth
    meta = imported["metadata"]
    assert meta["source_file"] == "sahmr_rich_e30.pth" and meta["source_epoch"] == 30
    assert meta["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert meta["dropped_unused_keys"] == 23 and meta["converter_version"]


def test_imported_checkpoint_loads_strictly_into_the_official_preset(imported, synthetic_model_dir):
    from sahmr_ros.body import load_body_assets
    from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig

    model = SAHMR(SAHMRConfig.official(), load_body_assets(synthetic_model_dir))
    model.load_state_dict(imported["state_dict"], strict=True)


def test_unexpected_missing_and_mismatched_keys_are_listed_and_nothing_written(official_pth, tmp_path):
    _, network = official_pth
    broken = dict(network)
    broken.pop("net.rcnet.root_net.out_conv.bias")
    broken["net.rcnet.extra.weight"] = torch.zeros(2)
    broken["net.metro_enhanced.upsampling.bias"] = torch.zeros(5)
    src = tmp_path / "broken.pth"
    torch.save({"network": broken, "epoch": 1}, src)
    out = tmp_path / "out.pt"
    with pytest.raises(CheckpointError) as err:
        import_checkpoint(src, out)
    text = str(err.value)
    assert "missing (1): rcnet.root_net.out_conv.bias" in text
    assert "unexpected (1): rcnet.extra.weight" in text
    assert "shape mismatch (1): mesh_network.upsampling.bias (5,) != (1723,)" in text
    assert not out.exists()


def test_not_a_release_file_is_refused(tmp_path):
    p = tmp_path / "x.pth"
    torch.save({"state_dict": {}}, p)
    with pytest.raises(CheckpointError, match="not an official SA-HMR checkpoint"):
        import_checkpoint(p, tmp_path / "o.pt")


def test_cli_import_then_demo_and_infer_with_the_official_preset(official_pth, user_files, tmp_path):
    path, _ = official_pth
    out = tmp_path / "imported.pt"
    run = [sys.executable, "-m", "sahmr_ros.cli"]
    r = subprocess.run(run + ["import-checkpoint", str(path), "-o", str(out)], capture_output=True, text=True,
                       timeout=900)
    assert r.returncode == 0, r.stderr
    assert "official preset" in r.stdout
    r = subprocess.run(run + ["demo", "--out", str(tmp_path / "demo"), "--checkpoint", str(out), "--device", "cpu"],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "official preset, checkpoint imported.pt" in r.stdout and "UNTRAINED" not in r.stdout
    assert (tmp_path / "demo" / "demo.png").is_file()
    r = subprocess.run(run + ["infer", *infer_args(user_files, out, tmp_path / "infer")], capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stderr
    assert "official preset, checkpoint imported.pt" in r.stdout
    assert (tmp_path / "infer" / "summary.json").is_file() and (tmp_path / "infer" / "overlay.png").is_file()
