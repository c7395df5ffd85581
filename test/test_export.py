"""sahmr export: stages combined, precise batch norm against a direct average, fp16 storage, the CLI."""

from __future__ import annotations

import pytest
import torch

from sahmr_ros.checkpoint import load_checkpoint, save_checkpoint
from sahmr_ros.errors import CheckpointError
from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig
from sahmr_ros.training.export import export_weights, recalibrate_batchnorm, training_batches


@pytest.fixture(scope="module")
def body(synthetic_model_dir):
    from sahmr_ros.body import load_body_assets

    return load_body_assets(synthetic_model_dir)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from sahmr_ros.data.synth import SynthConfig, synthesize

    out = tmp_path_factory.mktemp("export_data")
    synthesize(out, SynthConfig(split="train", scenes=1, frames_per_scene=4, seed=21, people=(1, 1)), workers=1,
               bags=False, progress=False)
    return out


def _model(body, seed):
    torch.manual_seed(seed)
    return SAHMR(SAHMRConfig.small(), body)


def test_export_combines_the_stages_and_stores_float16(body, synthetic_model_dir, tmp_path):
    a, b = _model(body, 1), _model(body, 2)
    for m in (a, b):  # non-trivial statistics, to see that they stay float32
        for mod in m.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.running_var.uniform_(0.5, 2.0)
    pa = save_checkpoint(tmp_path / "mesh.pt", a, "small", {"stage": "mesh", "step": 7})
    pb = save_checkpoint(tmp_path / "rc.pt", b, "small", {"stage": "rcnet", "step": 5})
    out = export_weights(pa, tmp_path / "ship.pt", rcnet=pb, model_dir=synthetic_model_dir)
    shipped = load_checkpoint(out, expected_preset="small")
    state = shipped["state_dict"]
    # each stage's training metadata travels (the model card reads it), through a second export too
    assert shipped["metadata"]["mesh_meta"]["step"] == 7 and shipped["metadata"]["rcnet_meta"]["step"] == 5
    again = load_checkpoint(export_weights(out, tmp_path / "again.pt", model_dir=synthetic_model_dir))
    assert again["metadata"]["mesh_meta"]["step"] == 7 and again["metadata"]["rcnet_meta"]["step"] == 5
    sa, sb = a.state_dict(), b.state_dict()
    assert state.keys() == sa.keys()
    for k, v in state.items():
        src = sb[k] if k.startswith("rcnet.") else sa[k]
        if k.endswith(("running_mean", "running_var")):
            assert v.dtype == torch.float32 and torch.equal(v, src), k
        elif v.is_floating_point():
            assert v.dtype == torch.float16 and torch.equal(v, src.half()), k
        else:
            assert torch.equal(v, src), k
    assert out.stat().st_size < 0.6 * pa.stat().st_size
    # an RCNet of another width: the keys match, the strict load names the first mismatching shape
    wide = {k: (torch.zeros(v.shape[0] + 1, *v.shape[1:]) if k == "rcnet.root_net.out_conv.bias" else v)
            for k, v in sb.items()}
    bad = tmp_path / "wide.pt"
    torch.save({**load_checkpoint(pb), "state_dict": wide}, bad)
    with pytest.raises(CheckpointError, match="does not fit the small preset: size mismatch for rcnet.root_net"):
        export_weights(pa, tmp_path / "x.pt", rcnet=bad, model_dir=synthetic_model_dir)
    fresh = _model(body, 3)
    fresh.load_state_dict(state)  # strict; copies upcast to float32
    assert next(fresh.parameters()).dtype == torch.float32


def test_precise_batchnorm_is_the_average_of_the_batch_statistics(body, data):
    model = _model(body, 4)
    batches = list(training_batches(data, body, count=2, samples_per_batch=2))
    assert recalibrate_batchnorm(model, batches) == 2 and not model.training
    bn = model.rcnet.root_net.hrnet.bn1
    got_mean, got_var = bn.running_mean.clone(), bn.running_var.clone()
    tracked = {n: int(m.num_batches_tracked) for n, m in model.named_modules()
               if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    seen = []
    hook = bn.register_forward_hook(lambda mod, inp, out: seen.append(inp[0].detach().double()))
    with torch.no_grad():
        model.train()
        for b in batches:
            model.rcnet.estimate_root(b.crops, b.bbx_lurb, b.K)
    hook.remove()
    mean = torch.stack([x.mean(dim=(0, 2, 3)) for x in seen]).mean(0)
    var = torch.stack([x.var(dim=(0, 2, 3), unbiased=True) for x in seen]).mean(0)
    assert torch.allclose(got_mean.double(), mean, rtol=1e-4, atol=1e-5)
    assert torch.allclose(got_var.double(), var, rtol=1e-4, atol=1e-5)
    # every stage's batch norms saw exactly those batches: RCNet's trunk, the sparse CNN, the mesh trunk
    for part in ("rcnet.root_net.", "rcnet.contact_net.", "mesh_"):
        used = [n for n in tracked if n.startswith(part) and tracked[n] > 0]
        assert used and all(tracked[n] == 2 for n in used), part


def test_cli_exports_and_refuses_a_bad_checkpoint_in_one_line(body, data, synthetic_model_dir, tmp_path, capsys):
    from sahmr_ros.cli import main

    ck = save_checkpoint(tmp_path / "run.pt", _model(body, 5), "small")
    out = tmp_path / "ship.pt"
    assert main(["export", str(ck), "-o", str(out), "--precise-bn", str(data), "--batches", "1",
                 "--model-dir", str(synthetic_model_dir)]) == 0
    meta = load_checkpoint(out)["metadata"]
    assert "1 batches of 4 images" in meta["precise_bn"] and meta["storage"].startswith("float16")
    capsys.readouterr()
    assert main(["export", str(tmp_path / "missing.pt"), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.pt: no such file" in err[0]
    assert main(["export", str(ck), "-o", str(out), "--precise-bn", str(data), "--batches", "99"]) == 2
    assert "lower --batches" in capsys.readouterr().err
