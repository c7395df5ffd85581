"""The `sahmr` command as a user runs it."""

from __future__ import annotations

import subprocess
import sys

from PIL import Image


def _sahmr(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sahmr_ros.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


def test_demo_writes_its_png_and_says_which_weights(tmp_path):
    """The shipped weights by default: the demo names them (and their model card) and prints each root error."""
    import re

    from sahmr_ros.networks.precision import cpu_supports_bf16
    from sahmr_ros.weights import shipped_weights

    r = _sahmr("demo", "--out", str(tmp_path / "out"), "--device", "cpu", "--precision", "auto")
    assert r.returncode == 0, r.stderr
    assert f"precision {'bf16' if cpu_supports_bf16() else 'fp32'}" in r.stdout  # auto resolved and reported
    assert f"weights: {shipped_weights().description}" in r.stdout and "UNTRAINED" not in r.stdout
    assert "sahmr_ros/weights/small_synthetic.pt" in r.stdout and "sahmr_ros/weights/MODEL_CARD.md" in r.stdout
    assert len(re.findall(r"person \d: root error \d+ mm", r.stdout)) == 2
    assert "the model card" in r.stdout and "mean root error" in r.stdout
    with Image.open(tmp_path / "out" / "demo.png") as im:
        assert im.size == (1400, 640)


def test_demo_untrained_is_explicit_and_exclusive_with_a_checkpoint(tmp_path):
    r = _sahmr("demo", "--out", str(tmp_path / "out"), "--untrained", "--checkpoint", "x.pt")
    assert r.returncode == 2 and "not allowed with argument" in r.stderr


def test_demo_refuses_an_unknown_precision(tmp_path):
    r = _sahmr("demo", "--out", str(tmp_path / "out"), "--precision", "fp8")
    assert r.returncode == 2 and "invalid choice: 'fp8'" in r.stderr


def test_demo_refuses_a_bad_checkpoint_clearly(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    r = _sahmr("demo", "--out", str(tmp_path / "out"), "--checkpoint", str(bad))
    assert r.returncode == 2
    assert "unreadable or corrupt" in r.stderr and "Traceback" not in r.stderr


def test_info_lists_missing_files_and_where_to_get_them(tmp_path):
    r = _sahmr("info", "--model-dir", str(tmp_path))
    assert r.returncode == 1, r.stderr
    assert "torch" in r.stdout and "spconv" in r.stdout and "device" in r.stdout
    assert r.stdout.count("MISSING") == 4
    assert "smpl.is.tue.mpg.de" in r.stdout and "zju3dv/SA-HMR" in r.stdout


def test_info_finds_a_complete_model_dir(synthetic_model_dir):
    r = _sahmr("info", "--model-dir", str(synthetic_model_dir))
    assert r.returncode == 0, r.stdout
    assert "MISSING" not in r.stdout and r.stdout.count("[ok     ]") == 4 and "model directory OK" in r.stdout
    assert "(17, 6890)" in r.stdout and "posedirs (6890, 3, 207)" in r.stdout


def test_info_says_what_is_wrong_with_each_bad_file(synthetic_model_dir, tmp_path):
    import shutil

    import numpy as np

    bad = tmp_path / "models"
    shutil.copytree(synthetic_model_dir, bad)
    np.save(bad / "J_regressor_h36m_correct.npy", np.zeros((17, 6000)))  # wrong vertex count
    (bad / "seg_part_info.npy").write_bytes(b"garbage")
    r = _sahmr("info", "--model-dir", str(bad))
    assert r.returncode == 1
    assert r.stdout.count("INVALID") == 2 and r.stdout.count("[ok     ]") == 2
    assert "(17, 6000)" in r.stdout and "expected a float (17, 6890)" in r.stdout
    assert "seg_part_info.npy" in r.stdout and "2 of 4 model files missing or invalid" in r.stdout
