"""Every kind of run x every tool: evaluate reproduces the run's test metrics, predict gives the model's
own output for a file made from a test sample, and each picture of visualize is drawn or refused in
one paragraph that names what works. Each kind of run is trained once (tiny), in-process."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from conftest import train
from dlcourse.errors import UserError
from dlcourse.evaluate import evaluate
from dlcourse.predict import predict
from dlcourse.viz import WHAT, visualize

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "figures.enabled=false", "trainer.batch_size=32"]
DIGITS = ["dataset.subset=300"]
LENET = ["model=lenet", "model.channels=[4,8]", "model.hidden=[16]"]
SOURCE_CLASSES = ["dataset.classes=[0,1,2,3,4]"]
TARGET_CLASSES = ["dataset.classes=[5,6,7,8,9]"]

# kind -> (overrides, needs the source run's best.pt as model.weights)
KINDS = {
    "mlp": ([*DIGITS, "model.hidden_sizes=[16]"], False),
    "lenet": ([*DIGITS, *LENET], False),
    "moons": (["dataset=moons", "dataset.n_samples=120", "model.hidden_sizes=[8]"], False),
    "sine": (["dataset=sine", "dataset.n_samples=120", "model.hidden_sizes=[8]"], False),
    "per_pixel": ([*DIGITS, *LENET, "dataset.normalize=per_pixel"], False),
    "classes": ([*DIGITS, *LENET, *SOURCE_CLASSES], False),
    "transfer": ([*DIGITS, *LENET, *TARGET_CLASSES], True),
    "cached": ([*DIGITS, *LENET, *TARGET_CLASSES, "finetune=feature_extractor"], True),
    "cv_fold": ([*DIGITS, "model.hidden_sizes=[16]", "cv.folds=2", "cv.fold=0"], False),
    "binary_images": ([*DIGITS, *LENET, "dataset.classes=[0,1]", "task=binary"], False),
}
CONV = {"lenet", "per_pixel", "classes", "transfer", "cached", "binary_images"}
VECTORS = {"moons", "sine"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """kind -> (run directory, metrics.json), each trained on first use."""
    root, done = tmp_path_factory.mktemp("matrix"), {}

    def get(kind: str):
        if kind not in done:
            overrides, transfer = KINDS[kind]
            if transfer:
                overrides = [*overrides, f"model.weights={get('classes')[0] / 'checkpoints' / 'best.pt'}"]
            done[kind] = (root / kind, train(root / kind, [*TINY, *overrides]))
        return done[kind]
    return get


def reference(run_dir):
    """The checkpoint's model and its input normalisation, rebuilt here with the builders alone."""
    from dlcourse.builders import dataset_info, make_model, resolve_task

    ckpt = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    cfg = OmegaConf.create(ckpt["config"])
    info = dataset_info(cfg)
    model, _ = make_model(cfg, info, torch.device("cpu"), resolve_task(cfg, info))
    model.load_state_dict(ckpt["model"])
    shape = tuple(ckpt["image_shape"])
    mean, std = (torch.tensor(ckpt["normalization"][k]) for k in ("mean", "std"))
    if mean.numel() == math.prod(shape) and len(shape) == 3:  # per pixel
        mean, std = mean.view(shape), std.view(shape)
    elif len(shape) == 3:  # per channel
        mean, std = mean.view(-1, 1, 1), std.view(-1, 1, 1)
    return model.eval(), ckpt, mean, std


def test_samples(run_dir):
    """The first test samples as stored (uint8 images or float feature rows) and their targets."""
    from dlcourse.builders import make_data, dataset_info
    cfg = OmegaConf.create(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["config"])
    data, _ = make_data(cfg, dataset_info(cfg), torch.device("cpu"))
    return data.test.images[:3], data.test.labels[:3]


test_samples.__test__ = False


# evaluate ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(KINDS))
def test_evaluate_reproduces_the_runs_test_metrics(runs, kind):
    run_dir, metrics = runs(kind)
    result, out = evaluate(run_dir)
    keys = ("mse", "mae", "r2", "loss") if kind == "sine" else ("acc", "loss")
    for key in keys:
        assert result[key] == pytest.approx(metrics[f"test/{key}"], abs=1e-6, rel=1e-6), key
    assert (out / "metrics.json").is_file()
    if kind == "moons":  # binary: the 2x2 confusion matrix, ROC AUC and average precision by scikit-learn
        from sklearn.metrics import average_precision_score, roc_auc_score

        model, _, mean, std = reference(run_dir)
        x, y = test_samples_all(run_dir)
        with torch.no_grad():
            score = torch.sigmoid(model((x - mean) / std)).view(-1).numpy()
        assert np.array(result["confusion_matrix"]).shape == (2, 2)
        assert np.array(result["confusion_matrix"]).sum() == len(y)
        assert result["roc_auc"] == pytest.approx(roc_auc_score(y.numpy(), score), abs=1e-6)
        assert result["average_precision"] == pytest.approx(average_precision_score(y.numpy(), score), abs=1e-6)
        for name in ("confusion_matrix.png", "roc_pr.png", "reliability.png"):
            assert (out / name).read_bytes()[:4] == b"\x89PNG", name
    if kind == "sine":
        for name in ("residuals.png", "fit.png"):
            assert (out / name).read_bytes()[:4] == b"\x89PNG", name


def test_samples_all(run_dir):
    from dlcourse.builders import make_data, dataset_info
    cfg = OmegaConf.create(torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["config"])
    data, _ = make_data(cfg, dataset_info(cfg), torch.device("cpu"))
    return data.test.images, data.test.labels


test_samples_all.__test__ = False


# predict ----------------------------------------------------------------------------------------
def expected_outputs(run_dir, raw: torch.Tensor, task: str) -> torch.Tensor:
    model, _, mean, std = reference(run_dir)
    x = raw.to(torch.float32) / (255 if raw.dtype == torch.uint8 else 1)
    with torch.no_grad():
        out = model((x - mean) / std)
    if task == "classification":
        return torch.softmax(out, 1)
    if task == "binary":
        p = torch.sigmoid(out.view(-1))
        return torch.stack([1 - p, p], 1)
    return out


def write_inputs(kind: str, raw: torch.Tensor, folder) -> list:
    if raw.dtype == torch.uint8:  # images: one PNG each, 8-bit grey
        paths = []
        for i, img in enumerate(raw):
            Image.fromarray(img[0].numpy()).save(folder / f"{kind}_{i}.png")
            paths.append(folder / f"{kind}_{i}.png")
        return paths
    np.savetxt(folder / f"{kind}.csv", raw.numpy(), fmt="%.9g", delimiter=",")  # vectors: rows of a CSV
    return [folder / f"{kind}.csv"]


@pytest.mark.parametrize("kind", list(KINDS))
def test_predict_gives_the_models_own_output(runs, kind, tmp_path):
    run_dir, _ = runs(kind)
    task = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["task"]
    raw, _ = test_samples(run_dir)
    expected = expected_outputs(run_dir, raw, task)
    results = predict(run_dir, write_inputs(kind, raw, tmp_path), top_k=2)
    assert len(results) == len(raw)
    for r, e in zip(results, expected):
        if task == "regression":
            assert r["values"] == pytest.approx(e.tolist(), abs=1e-5)
        else:
            assert r["probabilities"] == pytest.approx(e.tolist(), abs=1e-5)
            assert r["top"][0]["index"] == int(e.argmax()) and len(r["top"]) == 2


def test_predict_reads_vectors_from_npy_txt_and_the_command_line(runs, tmp_path):
    run_dir, _ = runs("sine")
    raw, _ = test_samples(run_dir)
    expected = expected_outputs(run_dir, raw, "regression")
    np.save(tmp_path / "x.npy", raw.numpy())
    np.savetxt(tmp_path / "x.txt", raw.numpy(), fmt="%.9g")
    literal = [f"{float(v):.9g}" for v in raw[:, 0]]
    for inputs in ([tmp_path / "x.npy"], [tmp_path / "x.txt"], literal):
        values = [v for r in predict(run_dir, inputs) for v in r["values"]]
        assert values == pytest.approx(expected.flatten().tolist(), abs=1e-5), inputs
    with pytest.raises(UserError, match="1 feature"):
        predict(run_dir, ["1,2"])


def test_predict_reads_16_bit_png_scaled_by_65535(runs, tmp_path):
    run_dir, _ = runs("lenet")
    raw, _ = test_samples(run_dir)
    Image.fromarray(raw[0, 0].numpy().astype(np.uint16) * 257).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    expected = expected_outputs(run_dir, raw[:1], "classification")[0]
    (result,) = predict(run_dir, [tmp_path / "deep.png"])
    assert result["probabilities"] == pytest.approx(expected.tolist(), abs=1e-5)


# visualize --------------------------------------------------------------------------------------
def expectation(kind: str, what: str) -> str:
    """'ok', or the words the refusal must contain."""
    if kind in VECTORS:
        return "vectors"
    if kind not in CONV and what in ("features", "gradcam"):
        return "convolution"
    return "ok"


@pytest.mark.parametrize("what", WHAT)
@pytest.mark.parametrize("kind", list(KINDS))
def test_visualize_draws_or_refuses_in_one_paragraph(runs, kind, what):
    run_dir, _ = runs(kind)
    expected = expectation(kind, what)
    if expected != "ok":
        with pytest.raises(UserError) as refused:
            visualize(run_dir, what, images=2, steps=5)
        message = str(refused.value)
        assert expected in message and "\n" not in message and "Traceback" not in message
        assert any(other in message for other in WHAT if other != what) or kind in VECTORS
        if kind in VECTORS:
            assert "evaluate" in message  # where the figures of a vector run are
        return
    path, result = visualize(run_dir, what, images=2, steps=5)
    assert path.read_bytes()[:4] == b"\x89PNG" and path.stat().st_size > 2000
    ckpt = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    shape, classes = tuple(ckpt["image_shape"]), len(ckpt["classes"])
    if what == "filters":
        assert result.ndim == 4 and result.shape[1] == 1 and torch.isfinite(result).all()
    elif what == "features":
        assert result.ndim == 3 and torch.isfinite(result).all()
    elif what == "saliency":
        for m in result.values():
            assert m.shape == (2, 1, *shape[1:]) and torch.isfinite(m).all()
    elif what == "gradcam":
        assert result.shape == (2, 1, *shape[1:]) and torch.isfinite(result).all()
    else:
        assert result["images"].shape == (classes, *shape)
        assert ((result["images"] >= 0) & (result["images"] <= 1)).all()
        assert result["end"].shape == (classes,) and torch.isfinite(result["end"]).all()


# the tools' refusals ----------------------------------------------------------------------------
def test_evaluate_names_a_missing_path_and_what_to_give(tmp_path, capsys, monkeypatch):
    from conftest import ROOT

    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from evaluate import main

    assert main([str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "nowhere does not exist" in err and "run directory" in err and "resume=" not in err
    assert err.count("\n") == 1


def test_report_refuses_a_single_run_directory(runs, capsys, monkeypatch):
    from conftest import ROOT

    run_dir, _ = runs("mlp")
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from report import main

    assert main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert "one run, not of a sweep" in err and "outputs/multirun" in err and err.count("\n") == 1
    assert not (run_dir / "report.md").exists()


def test_evaluate_script_prints_the_regression_metrics(runs, capsys, monkeypatch):
    from conftest import ROOT

    run_dir, metrics = runs("sine")
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from evaluate import main

    assert main([str(run_dir)]) == 0
    printed = capsys.readouterr().out
    assert f"MSE {metrics['test/mse']:.4f}" in printed and f"R² {metrics['test/r2']:.4f}" in printed
