"""Every course experiment composes to what its file says, and a tiny version of its first sweep
point trains: the run used the experiment's settings, and its test metrics and parameter count
equal an independent computation from the checkpoint (the sweep's first values: what
`python train.py -m experiment=<name>` starts with)."""
from __future__ import annotations

import pytest
import torch
import yaml
from omegaconf import OmegaConf

from conftest import CONFIGS, compose_config, needs_fashion_mnist, recompute_test_metrics, train

TINY = ["trainer.max_epochs=1", "trainer.limit_train_batches=2", "figures.enabled=false"]
# lab I experiments not run in tests/test_course_lab.py (perceptron_gates, xor_mlp, logistic_separable,
# sine_regression, init_depth and depth_spiral are, with real bars)
LAB_I = ["sine_activations", "activations_depth", "batch_size_noise"]
LAB_II = ["capacity", "l1_vs_l2", "dropout", "batchnorm_lr", "augment_small_data", "normalization", "mlp_vs_cnn",
          "plain_vs_residual", "random_labels", "optimizers", "init_schemes", "mlp_mnist", "transfer_pretrain_fashion"]


def experiment_file(name: str) -> dict:
    return yaml.safe_load((CONFIGS / "experiment" / f"{name}.yaml").read_text())


def first_sweep_values(name: str) -> list[str]:
    """`key=first value` for each key the experiment sweeps."""
    params = (experiment_file(name).get("hydra") or {}).get("sweeper", {}).get("params", {})
    return [f"{k}={str(v).split(',')[0]}" for k, v in params.items()]


def own_keys(name: str) -> dict:
    """The keys the experiment file sets itself (dotted), without Hydra's and the defaults list."""
    text = {k: v for k, v in experiment_file(name).items() if k not in ("defaults", "hydra")}
    return {k: v for k, v in _flatten(text).items()}


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_and_check(run_dir, name: str, extra: list[str]) -> dict:
    sweep = first_sweep_values(name)
    overrides = [f"experiment={name}", *sweep, *TINY, *extra]
    cfg = compose_config(overrides)
    given = {o.split("=", 1)[0] for o in [*sweep, *TINY, *extra]}
    for key, value in own_keys(name).items():  # the experiment's settings reach the composed config
        if key not in given:
            assert OmegaConf.select(cfg, key) == value, f"{name}: {key}"
    metrics = train(run_dir, overrides)
    assert metrics["epochs_run"] == 1

    ckpt = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert metrics["params"] == sum(t.numel() for k, t in ckpt["model"].items() if _is_parameter(run_dir, k))
    stored = OmegaConf.create(ckpt["config"])
    for override in sweep:  # the run trained the sweep's first point (keys, not group choices)
        key, value = override.split("=", 1)
        if "." in key:
            assert OmegaConf.select(stored, key) == yaml.safe_load(value), f"{name}: {key}"
    if ckpt["task"] != "regression":
        again = recompute_test_metrics(run_dir)
        assert metrics["test/acc"] == pytest.approx(again["acc"], abs=1e-6)
    return metrics


def _is_parameter(run_dir, key: str) -> bool:
    """State-dict entries that are parameters (not batch-norm buffers)."""
    return not key.endswith(("running_mean", "running_var", "num_batches_tracked"))


@pytest.mark.parametrize("name", LAB_I)
def test_lab_one_experiments_run(tmp_path, name):
    run_and_check(tmp_path / name, name, [])


@needs_fashion_mnist
@pytest.mark.parametrize("name", LAB_II)
def test_lab_two_experiments_run(tmp_path, name):
    # two classes: a 2,000-image test set keeps the deep models' evaluation short
    run_and_check(tmp_path / name, name, ["dataset.per_class=20", "dataset.classes=[0,1]"])
