"""Pictures of a trained network: filters, feature maps, saliency, Grad-CAM, class-model images."""
from __future__ import annotations


import pytest
import torch

from conftest import ROOT, train
from dlcourse.errors import ConfigError
from dlcourse.viz import visualize


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("viz") / "lenet"
    train(run_dir, ["model=lenet", "trainer.max_epochs=3"])
    return run_dir


def test_filters_are_the_first_convolutions_kernels(lenet_run):
    path, images = visualize(lenet_run, "filters")
    weights = torch.load(lenet_run / "checkpoints/best.pt", weights_only=True)["model"]["features.0.weight"]
    assert images.shape == (6, 1, 5, 5)
    w = weights[:, :1]  # each filter by its largest |w|: 0 maps to 0.5 (white on the red-blue map), signs kept
    expected = 0.5 + 0.5 * w / w.flatten(1).abs().max(1).values.view(-1, 1, 1, 1)
    torch.testing.assert_close(images, expected)
    assert ((images > 0.5) == (w > 0)).all() and images.amin() >= 0 and images.amax() <= 1
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_mlp_filters_are_its_first_units_over_the_image(tmp_path):
    train(tmp_path / "mlp", ["model.hidden_sizes=[16]", "trainer.max_epochs=1"])
    _, images = visualize(tmp_path / "mlp", "filters")
    assert images.shape == (16, 1, 28, 28)
    with pytest.raises(ConfigError, match="Grad-CAM needs a convolutional model"):
        visualize(tmp_path / "mlp", "gradcam")


def test_feature_maps_of_a_named_layer(lenet_run):
    _, maps = visualize(lenet_run, "features", layer="features.3")
    assert maps.shape == (16, 10, 10)
    with pytest.raises(ConfigError, match="no such layer"):
        visualize(lenet_run, "features", layer="features.99")


def test_saliency_and_gradcam_maps_have_the_input_size_and_are_finite(lenet_run):
    _, maps = visualize(lenet_run, "saliency", images=4)
    for m in maps.values():
        assert m.shape == (4, 1, 28, 28) and torch.isfinite(m).all() and m.sum() > 0
    path, cam = visualize(lenet_run, "gradcam", images=4)
    assert cam.shape == (4, 1, 28, 28) and torch.isfinite(cam).all() and (cam >= 0).all()
    assert path.name == "gradcam.png" and path.parent.name == "viz"


def test_class_model_images_raise_their_class_score(lenet_run):
    _, result = visualize(lenet_run, "class_model", steps=60)
    assert result["images"].shape == (10, 1, 28, 28)
    assert result["end"].min() > 0.9 and (result["end"] - result["start"]).min() > 0.5


def test_script_draws_and_names_its_choices(lenet_run, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from visualize import main

    assert main([str(lenet_run), "filters"]) == 0 and "viz/filters.png" in capsys.readouterr().out
    assert main([str(lenet_run), "gradcam", "--layer", "nope"]) == 2
    err = capsys.readouterr().err
    assert "--layer nope" in err and "features.0, features.3" in err


def test_activation_derivatives_match_the_textbook(tmp_path):
    from dlcourse.viz.activations import curves, figure

    c = curves(["relu", "sigmoid", "tanh"])
    x, y, dy = c["relu"]
    assert torch.equal(dy, (x > 0).float())  # the dead zone: no gradient below 0
    x, y, dy = c["sigmoid"]
    torch.testing.assert_close(dy, y * (1 - y))
    assert dy.max() == pytest.approx(0.25, abs=1e-4) and dy[0] < 0.01 and dy[-1] < 0.01  # saturation
    x, y, dy = c["tanh"]
    torch.testing.assert_close(dy, 1 - y ** 2)
    assert figure(tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_playground_sgd_on_the_quadratic_follows_the_closed_form():
    from dlcourse.viz.playground import SURFACES, run

    results = run({"sgd": (torch.optim.SGD, {})}, "quadratic", steps=5, lr=0.04)
    points, losses, _ = results["sgd"]
    x0, y0 = SURFACES["quadratic"].start
    for t in range(6):  # f = (x^2 + 20 y^2) / 2: x_t = x0 (1 - lr)^t, y_t = y0 (1 - 20 lr)^t
        assert points[t, 0].item() == pytest.approx(x0 * (1 - 0.04) ** t)
        assert points[t, 1].item() == pytest.approx(y0 * (1 - 20 * 0.04) ** t)
    assert losses[0] == pytest.approx(0.5 * (x0 ** 2 + 20 * y0 ** 2))


def test_playground_script_uses_the_optim_configs(tmp_path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    from playground import main

    assert main(["optim=momentum,adam", "surface=quadratic", "steps=50", f"out={tmp_path / 'p.png'}"]) == 0
    printed = capsys.readouterr().out
    assert "momentum" in printed and "adam" in printed and (tmp_path / "p.png").stat().st_size > 10_000
    assert main(["surface=himmelblau"]) == 2
    assert "surface='himmelblau' is not known" in capsys.readouterr().err


@pytest.mark.parametrize("model", ["alexnet", "vgg11", "resnet18"])
def test_filters_and_gradcam_work_for_the_conv_models_of_the_zoo(tmp_path, model):
    train(tmp_path / model, [f"model={model}", "dataset=synthetic", "dataset.image_shape=[3,32,32]",
                             "dataset.size=64", "trainer.batch_size=16", "trainer.max_epochs=1",
                             "trainer.limit_train_batches=1"])
    _, images = visualize(tmp_path / model, "filters")
    assert images.shape[1] == 3  # RGB kernels, drawn in colour
    _, cam = visualize(tmp_path / model, "gradcam", images=2)
    assert cam.shape == (2, 1, 32, 32) and torch.isfinite(cam).all()
