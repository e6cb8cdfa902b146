"""Every option of every config group composes; types are checked at composition."""
from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from conftest import CONFIGS, compose_config
from dlcourse.config import validate
from dlcourse.errors import ConfigError

GROUP_OPTIONS = [(group.name, path.stem) for group in sorted(CONFIGS.iterdir()) if group.is_dir()
                 for path in sorted(group.glob("*.yaml"))]


@pytest.mark.parametrize("group,option", GROUP_OPTIONS, ids=[f"{g}={o}" for g, o in GROUP_OPTIONS])
def test_every_option_composes_and_validates(group, option):
    overrides = [f"{group}={option}"]
    if option == "imagefolder":
        overrides.append("dataset.root=/tmp")
    cfg = compose_config(overrides)
    validate(cfg)


def test_default_config_is_the_offline_digits_run():
    cfg = compose_config()
    assert cfg.dataset.name == "digits" and cfg.model.name == "mlp"
    assert cfg.optim._target_ == "torch.optim.Adam"
    assert cfg.trainer.monitor == "auto" and cfg.resume is None  # resolved to val/acc for digits (dlcourse/tasks.py)


@pytest.mark.parametrize("override", ["trainer.max_epochs=abc", "trainer.batch_size=1.5",
                                      "trainer.deterministic=maybe"])
def test_wrong_type_fails_at_composition(override):
    with pytest.raises((ValidationError, ConfigCompositionException)):
        compose_config([override])


def test_unknown_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException):
        compose_config(["trainer.max_epoch=3"])


@pytest.mark.parametrize("override,key", [
    ("optim.lr=-1", "optim.lr"), ("trainer.batch_size=0", "trainer.batch_size"),
    ("trainer.max_epochs=-3", "trainer.max_epochs"), ("dataset.val_split=1.5", "dataset.val_split"),
    ("trainer.precision=64-weird", "trainer.precision"), ("trainer.device=tpu", "trainer.device"),
])
def test_out_of_range_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        validate(compose_config([override]))


def test_synthetic_shape_is_checked():
    with pytest.raises(ConfigError, match="image_shape"):
        validate(compose_config(["dataset=synthetic", "dataset.image_shape=[3,0,32]"]))


def test_textbook_optimizer_names_build_those_optimizers():
    import torch

    from dlcourse.builders import make_optimizer

    def built(name):
        return make_optimizer(compose_config([f"optim={name}"]), torch.nn.Linear(2, 2))

    sgd, momentum, nesterov = built("sgd"), built("momentum"), built("nesterov")
    assert type(sgd) is type(momentum) is type(nesterov) is torch.optim.SGD
    assert sgd.param_groups[0]["momentum"] == 0 and not sgd.param_groups[0]["nesterov"]
    assert momentum.param_groups[0]["momentum"] == 0.9 and not momentum.param_groups[0]["nesterov"]
    assert nesterov.param_groups[0]["momentum"] > 0 and nesterov.param_groups[0]["nesterov"]
    assert type(built("adamw")) is torch.optim.AdamW and type(built("nadam")) is torch.optim.NAdam
