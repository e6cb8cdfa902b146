"""Evaluate and predict from a checkpoint, with nothing but the checkpoint (no training flags)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import ROOT, train
from dlcourse.evaluate import calibration, evaluate, load
from dlcourse.predict import predict


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("eval") / "run"
    metrics = train(run_dir, ["model=lenet", "trainer.max_epochs=3"])
    return run_dir, metrics


def test_evaluate_reproduces_the_runs_test_metrics(trained):
    run_dir, metrics = trained
    result, out = evaluate(run_dir)
    assert result["acc"] == metrics["test/acc"] and result["n"] == 360
    assert result["loss"] == pytest.approx(metrics["test/loss"], rel=1e-4)
    matrix = np.array(result["confusion_matrix"])
    assert matrix.sum() == 360 and np.trace(matrix) == round(metrics["test/acc"] * 360)
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["acc"] == result["acc"] and (out / "confusion_matrix.csv").read_text().count("\n") == 11
    for name in ("confusion_matrix.png", "reliability.png", "errors.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    # TensorBoard beside the run: the same pictures, byte for byte, and the scores as text
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    for name in ("confusion_matrix", "reliability", "errors"):
        [image] = events.Images(f"eval/test/{name}")
        assert image.encoded_image_string == (out / f"{name}.png").read_bytes(), name
    [text] = events.Tensors("eval/test/acc/text_summary")
    assert text.tensor_proto.string_val[0].decode() == f"{result['acc']:.4f}"


def test_per_class_recall_matches_a_direct_computation(trained):
    run_dir, _ = trained
    result, _ = evaluate(run_dir, split="val")
    run = load(run_dir)
    with torch.no_grad():
        pairs = [(run.model(x).argmax(1), y) for x, y in run.data.val]
    pred, labels = torch.cat([p for p, _ in pairs]), torch.cat([y for _, y in pairs])
    for c, name in enumerate(run.classes):
        mask = labels == c
        assert result["per_class"][name]["recall"] == pytest.approx((pred[mask] == c).double().mean().item())
        assert result["per_class"][name]["support"] == int(mask.sum())
    assert result["acc"] == pytest.approx((pred == labels).double().mean().item())


def test_flip_tta_averages_the_flipped_predictions(trained):
    run_dir, _ = trained
    plain, _ = evaluate(run_dir, split="val")
    flipped, _ = evaluate(run_dir, split="val", tta="flip")
    assert flipped["tta"] == "flip" and flipped["loss"] != plain["loss"]


def test_expected_calibration_error_by_hand():
    confidence = np.array([0.95, 0.95, 0.55, 0.55])
    correct = np.array([1.0, 1.0, 1.0, 0.0])
    cal = calibration(confidence, correct, bins=10)
    # two bins, each half of the data: |1 - 0.95| and |0.5 - 0.55|
    assert cal["ece"] == pytest.approx(0.5 * 0.05 + 0.5 * 0.05)
    assert [b["count"] for b in cal["bins"]] == [2, 2]


def test_predict_gives_the_class_the_model_gives_the_same_tensor(trained, tmp_path):
    run_dir, _ = trained
    run = load(run_dir)
    image = run.data.test.images[7]  # uint8 [1, 28, 28]
    Image.fromarray(image[0].numpy()).save(tmp_path / "digit.png")
    Image.fromarray(np.repeat(image[0].numpy()[:, :, None], 3, axis=2)).resize((56, 56), Image.NEAREST).save(
        tmp_path / "big_rgb.png")
    x = run.data.normalize(image[None].float() / 255)
    with torch.no_grad():
        expected = torch.softmax(run.model(x), 1)[0]
    results = predict(run_dir, [tmp_path / "digit.png", tmp_path / "big_rgb.png"], top_k=3)
    assert results[0]["top"][0]["index"] == int(expected.argmax())
    assert results[0]["top"][0]["probability"] == pytest.approx(float(expected.max()), abs=1e-5)
    assert len(results[1]["top"]) == 3 and results[1]["top"][0]["index"] == int(expected.argmax())


def run_script(name, *args):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)], capture_output=True,
                          text=True, timeout=120)


def test_scripts_print_a_report_and_refuse_tampered_checkpoints(trained, tmp_path, capsys, monkeypatch):
    run_dir, metrics = trained
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from evaluate import main

    assert main([str(run_dir), "--split", "test"]) == 0
    printed = capsys.readouterr().out
    assert f"acc {metrics['test/acc']:.4f}" in printed and "precision" in printed
    ckpt = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    ckpt["model"] = {k: v[..., :1] if v.ndim > 1 else v for k, v in ckpt["model"].items()}  # wrong shapes
    torch.save(ckpt, tmp_path / "tampered.pt")
    bad = run_script("evaluate.py", tmp_path / "tampered.pt")
    assert bad.returncode == 2 and "do not fit the model" in bad.stderr and "Traceback" not in bad.stderr
    del ckpt["config"]
    torch.save(ckpt, tmp_path / "old.pt")
    old = run_script("predict.py", tmp_path / "old.pt", tmp_path / "old.pt")
    assert old.returncode == 2 and "no stored config" in old.stderr
    assert main([str(tmp_path / "nowhere")]) == 2 and "does not exist" in capsys.readouterr().err
