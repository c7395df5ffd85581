"""The weights shipped in sahmr_ros/weights/: they load, they are what their model card says, and the card's
check metrics are reproduced."""

from __future__ import annotations

import shutil

import pytest
import torch

from sahmr_ros import weights as W
from sahmr_ros.errors import CheckpointError, InputError
from sahmr_ros.pipeline import Pipeline, PipelineConfig


def test_shipped_checkpoint_is_small_and_loads_strictly_into_the_small_preset(synthetic_model_dir):
    from sahmr_ros.body import load_body_assets
    from sahmr_ros.checkpoint import load_checkpoint
    from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig

    path = W.WEIGHTS_DIR / W.CHECKPOINT_FILENAME
    assert path.stat().st_size <= W.MAX_CHECKPOINT_BYTES  # 40 MB
    payload = load_checkpoint(path, expected_preset="small")
    model = SAHMR(SAHMRConfig.small(), load_body_assets(synthetic_model_dir))
    missing, unexpected = model.load_state_dict(payload["state_dict"], strict=False)
    assert missing == [] and unexpected == []

    pipe = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu"))
    assert pipe.weights_description == W.shipped_weights().description + ", synthetic body"
    state = pipe.model.state_dict()
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())  # fp16 storage upcast
    half = [k for k, v in payload["state_dict"].items() if v.dtype == torch.float16]
    assert half, "the shipped weights are stored in fp16"
    for k in half[:20]:
        assert torch.equal(state[k], payload["state_dict"][k].float()), k


def test_model_card_markdown_is_rendered_from_the_json():
    from sahmr_ros.evaluation.card import render_model_card

    card = W.read_card()
    md = (W.WEIGHTS_DIR / W.MODEL_CARD_FILENAME).read_text(encoding="utf-8")
    assert md == render_model_card(card), "MODEL_CARD.md is stale: regenerate it with bench/model_card.py"
    shipped = W.shipped_weights()  # size and sha256 of the checkpoint are the card's
    assert card["weights"]["sha256"] in md and shipped.checkpoint.name == card["weights"]["file"]
    assert card["held_out"]["metrics"] and card["held_out"]["untrained_metrics"] and card["check"]["metrics"]


def test_card_check_metrics_are_reproduced(tmp_path, one_torch_thread):
    """Generate the card's check split with its recorded command (through the library), evaluate the shipped
    weights as ``sahmr eval --demo`` does (CPU, fp32, one thread) and compare every metric with the card's
    stated tolerance: max(1 mm / 0.01 m / 1e-3 for shares, 1e-3 relative). CPU fp32 is deterministic: a fresh
    process reproduced the card bit for bit on the development machine, and 1 against 2 torch threads differ
    by 5e-4 of the tolerance at most (6e-5 m of PenE; the card records the figure it measured). About 7 s
    on one loaded core."""
    from sahmr_ros.evaluation.card import compare_metrics, evaluate_embedded, synth_from_command

    check = W.read_card()["check"]
    synth_from_command(check["data_command"], tmp_path / "check", workers=1)
    result = evaluate_embedded(tmp_path / "check", device="cpu")
    assert result["weights"].startswith(W.shipped_weights().description)
    bad = compare_metrics(result["metrics"], check["metrics"], check["tolerance"])
    assert not bad, ("check metrics differ from the model card:\n" + "\n".join(bad) + "\nIf the generator or the "
                     "pipeline changed on purpose, regenerate the card: python bench/model_card.py --weights "
                     "sahmr_ros/weights/small_synthetic.pt --train-info sahmr_ros/weights/small_synthetic.json")


def _copy_shipped(tmp_path, with_checkpoint=True):
    directory = tmp_path / "weights"
    directory.mkdir()
    shutil.copy(W.WEIGHTS_DIR / W.CARD_FILENAME, directory)
    if with_checkpoint:
        shutil.copy(W.WEIGHTS_DIR / W.CHECKPOINT_FILENAME, directory)
    return directory


def test_missing_corrupt_or_replaced_weights_are_refused_naming_the_file(tmp_path):
    restore = "git checkout sahmr_ros/weights/"
    directory = _copy_shipped(tmp_path, with_checkpoint=False)
    with pytest.raises(CheckpointError, match="no such file") as err:
        W.shipped_weights(directory)
    assert "sahmr_ros/weights/small_synthetic.pt" in str(err.value) and restore in str(err.value)

    pt = directory / W.CHECKPOINT_FILENAME
    pt.write_bytes((W.WEIGHTS_DIR / W.CHECKPOINT_FILENAME).read_bytes()[:100_000])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as err:
        W.shipped_weights(directory)
    assert restore in str(err.value)

    data = bytearray((W.WEIGHTS_DIR / W.CHECKPOINT_FILENAME).read_bytes())
    data[len(data) // 2] ^= 0xFF
    pt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256 .* differs from its model card") as err:
        W.shipped_weights(directory)
    assert restore in str(err.value) and "bench/model_card.py" in str(err.value)

    (directory / W.CARD_FILENAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="small_synthetic.json.*unreadable") as err:
        W.shipped_weights(directory)
    assert restore in str(err.value)


def test_cli_says_in_one_line_how_to_restore_missing_weights(tmp_path, monkeypatch, capsys):
    from sahmr_ros.cli import main

    monkeypatch.setattr(W, "WEIGHTS_DIR", _copy_shipped(tmp_path, with_checkpoint=False))
    assert main(["demo", "--out", str(tmp_path / "out"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "sahmr_ros/weights/small_synthetic.pt" in err and "git checkout sahmr_ros/weights/" in err
    assert not (tmp_path / "out" / "demo.png").exists()


def test_embedded_default_weights_choice(synthetic_model_dir):
    with pytest.raises(InputError, match="weights: 'trained' unknown"):
        Pipeline.embedded_default(synthetic_model_dir, weights="trained")
    with pytest.raises(InputError, match="choose one"):
        Pipeline.embedded_default(synthetic_model_dir, checkpoint="x.pt", weights="untrained")
    untrained = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu"), weights="untrained")
    assert "UNTRAINED" in untrained.weights_description
