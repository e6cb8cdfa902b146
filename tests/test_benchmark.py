"""Smoke test of the benchmark (the timings themselves belong to scripts/benchmark.py, not to tests)."""
from __future__ import annotations

import json
import math

from conftest import ROOT
from dlcourse.benchmark import BenchConfig, format_table, run_benchmark


def test_benchmark_times_three_pipelines_on_synthetic_data():
    cfg = BenchConfig(model="mlp", model_options={"hidden_sizes": [32]}, dataset="synthetic",
                      image_shape=(1, 8, 8), size=200, batch_size=50, eval_batch_size=64,
                      device="cpu", epochs=1, warmup_epochs=1, workers=0)
    result = run_benchmark(cfg, log=lambda *_: None)
    rows = {r["key"]: r for r in result["rows"]}
    assert list(rows) == ["a", "b", "c"]
    for r in rows.values():
        assert r["images_per_s"] > 0 and math.isfinite(r["images_per_s"])
        assert r["epoch_s"] >= r["train_s"] > 0 and 0 <= r["val_acc"] <= 1
    # the same split and the same number of training images in each pipeline
    assert result["settings"]["train_images"] == 180
    assert set(result["ratios"]) == {"a/b", "a/c"}
    table = format_table(result)
    assert "(a) dlcourse Engine" in table and "(a)/(b) =" in table


def test_script_writes_json(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from benchmark import main

    out = tmp_path / "bench.json"
    assert main(["--model", "lenet", "--dataset", "synthetic", "--size", "64", "--batch-size", "32",
                 "--epochs", "1", "--device", "cpu", "--skip-dataloader", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["key"] for r in result["rows"]] == ["a", "b"] and result["settings"]["threads"] >= 1
