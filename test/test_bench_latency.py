"""bench/latency.py: FLOP attribution against hand counts, the summary table, one tiny end-to-end run."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def latency():
    spec = importlib.util.spec_from_file_location("bench_latency", REPO / "bench" / "latency.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


class _Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)  # (1, 3, 8, 8) -> (1, 4, 6, 6)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(144, 16), torch.nn.Linear(16, 16)])
        self.head = torch.nn.Linear(16, 2)
        eye = torch.eye(16)
        eye[0, 1] = 1.0
        with warnings.catch_warnings():  # "sparse CSR tensor support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            self.sparse = eye.to_sparse_csr()  # 17 stored entries

    def forward(self, x):
        y = self.conv(x).flatten(1)
        for block in self.blocks:
            y = block(y)
        y = (self.sparse @ y.T).T  # outside every stage module: "other"
        return self.head(y)


def test_stage_flops_match_hand_count(latency):
    model = _Tiny().eval()
    x = torch.randn(1, 3, 8, 8)
    stages = {"conv": "cnn", "blocks": "mlp", "head": "mlp", "absent.module": "cnn"}
    with torch.inference_mode():
        flops = latency.count_stage_flops(model, lambda: model(x), stages)
    conv = 2 * (4 * 6 * 6) * (3 * 3 * 3)
    mlp = 2 * (144 * 16 + 16 * 16 + 16 * 2)
    sparse = 2 * 17 * 1  # 2 x nnz x columns of the dense operand, not 2 x 16 x 16 x 1
    assert flops == {"cnn": conv, "mlp": mlp, "other": sparse, "total": conv + mlp + sparse}


def test_summary_markdown(latency):
    def row(precision, persons, ms, gflop):
        return {"preset": "small", "precision": precision, "persons": persons, "peak_mb": 100.0,
                "ms": {"total": ms}, "flops": {"total": gflop * 1e9}}

    text = latency.summary_markdown([row("fp32", 1, 100.0, 1.0), row("fp32", 4, 250.0, 4.0), row("bf16", 2, 50.0, 2.0)],
                                    {"fp32": 100.0, "bf16": 400.0})
    lines = text.splitlines()
    assert lines[0].startswith("| preset | precision | persons | total ms | x vs 1 person |")
    assert lines[2] == "| small | fp32 | 1 | 100 | 1.00 | 1.00 | 10.0 | 10.0 | 100 |"
    assert lines[3] == "| small | fp32 | 4 | 250 | 2.50 | 4.00 | 16.0 | 16.0 | 100 |"
    assert lines[4] == "| small | bf16 | 2 | 50 | 1.00 (vs 2) | 2.00 | 40.0 | 10.0 | 100 |"
    assert latency.gflops_per_s(0, 10.0) == 0.0


def test_small_run_prints_summary(latency, capsys, tmp_path):
    out = tmp_path / "latency.json"
    assert latency.main(["--presets", "small", "--persons", "1", "--repeats", "1", "--warmup", "0",
                         "--precisions", "fp32", "--device", "cpu", "--gemm-size", "256", "--no-map-check",
                         "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "attainable" in text and "| small | fp32 | 1 |" in text
    result = json.loads(out.read_text())["results"][0]
    assert result["flops"]["total"] > 0 and set(result["ms"]) >= {"sparse_cnn", "total"}
    assert all(result["flops"][s] > 0 for s in ("rcnet_cnn", "sparse_cnn", "mesh_cnn", "transformer", "upsampling"))
