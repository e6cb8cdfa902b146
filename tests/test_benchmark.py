"""Smoke test of the benchmark (the timings themselves belong to scripts/benchmark.py, not to tests)."""
from __future__ import annotations

import json
import math

import pytest

from conftest import ROOT
from benchmarks import compose
from benchmarks.throughput import Timing, format_table, run_benchmark


def test_benchmark_times_three_pipelines_on_synthetic_data():
    cfg = compose(["model.hidden_sizes=[32]", "dataset=synthetic", "dataset.image_shape=[1,8,8]",
                   "dataset.size=200", "trainer.batch_size=50", "trainer.eval_batch_size=64", "trainer.device=cpu"])
    result = run_benchmark(cfg, Timing(epochs=1, warmup_epochs=1, workers=0), log=lambda *_: None)
    rows = {r["key"]: r for r in result["rows"]}
    assert list(rows) == ["a", "b", "c"]
    for r in rows.values():
        assert r["images_per_s"] > 0 and math.isfinite(r["images_per_s"])
        assert r["epoch_s"] >= r["train_s"] > 0
    # the same split, the same initial weights and the same number of training images in each pipeline
    assert result["settings"]["train_images"] == 180
    for key in "ab":
        assert rows[key]["images_per_s"] * rows[key]["epoch_s"] == pytest.approx(180)
    assert set(result["ratios"]) == {"a/b", "a/c"}
    assert result["ratios"]["a/b"] == rows["b"]["epoch_s"] / rows["a"]["epoch_s"]
    table = format_table(result)
    assert "(a) dlcourse Engine" in table and "(a)/(b) =" in table


def test_script_composes_the_training_config_and_writes_json(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from benchmark import main

    out = tmp_path / "bench.json"
    assert main(["--model", "lenet", "--dataset", "synthetic", "--set", "dataset.size=64", "optim.lr=0.01",
                 "--batch-size", "32", "--epochs", "1", "--device", "cpu", "--skip-dataloader",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [r["key"] for r in result["rows"]] == ["a", "b"] and result["settings"]["threads"] >= 1
    assert result["settings"]["lr"] == 0.01 and result["settings"]["train_images"] == round(64 * 0.9)
