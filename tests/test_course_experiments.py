"""Every course experiment's config composes and a tiny version of one of its runs trains (the
sweep's first values: what `python train.py -m experiment=<name>` starts with)."""
from __future__ import annotations

import json

import pytest

from conftest import compose_config, needs_fashion_mnist, train

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "figures.enabled=false"]
# lab I experiments not run in tests/test_course_lab.py (perceptron_gates, xor_mlp, logistic_separable,
# sine_regression, init_depth and depth_spiral are, with real bars)
LAB_I = ["sine_activations", "activations_depth", "batch_size_noise"]
LAB_II = ["capacity", "l1_vs_l2", "dropout", "batchnorm_lr", "augment_small_data", "normalization", "mlp_vs_cnn",
          "plain_vs_residual", "random_labels", "optimizers", "init_schemes", "mlp_mnist", "transfer_pretrain_fashion"]


def first_sweep_values(name: str) -> list[str]:
    """`key=first value` for each key the experiment sweeps."""
    import yaml

    from conftest import CONFIGS

    cfg = compose_config([f"experiment={name}"])

    text = yaml.safe_load((CONFIGS / "experiment" / f"{name}.yaml").read_text())
    params = (text.get("hydra") or {}).get("sweeper", {}).get("params", {})
    assert cfg.model.name  # composes
    return [f"{k}={str(v).split(',')[0]}" for k, v in params.items()]


@pytest.mark.parametrize("name", LAB_I)
def test_lab_one_experiments_run(tmp_path, name):
    metrics = train(tmp_path / name, [f"experiment={name}", *first_sweep_values(name), *TINY])
    assert metrics["epochs_run"] == 1


@needs_fashion_mnist
@pytest.mark.parametrize("name", LAB_II)
def test_lab_two_experiments_run(tmp_path, name):
    # two classes: a 2,000-image test set keeps the deep models' evaluation short
    overrides = [f"experiment={name}", *first_sweep_values(name), *TINY, "dataset.per_class=20", "dataset.classes=[0,1]"]
    metrics = train(tmp_path / name, overrides)
    assert metrics["epochs_run"] == 1
    assert json.loads((tmp_path / name / "metrics.json").read_text())["params"] > 0
