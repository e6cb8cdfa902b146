"""The LR range test: leaves everything as it found it, suggests an LR inside the sweep, trains with it."""
from __future__ import annotations

import json

import pytest
import torch
import yaml

from conftest import cli, compose_config, train
from dlcourse.builders import dataset_info, make_data, make_losses, make_model, make_optimizer, resolve_task
from dlcourse.lr_finder import lr_range_test, suggestions


def test_range_test_restores_model_optimizer_and_generators():
    cfg = compose_config(["optim=momentum"])
    cpu = torch.device("cpu")
    torch.manual_seed(0)
    task = resolve_task(cfg, dataset_info(cfg))
    model, _ = make_model(cfg, dataset_info(cfg), cpu, task)
    optimizer = make_optimizer(cfg, model)
    data, aug = make_data(cfg, dataset_info(cfg), cpu)
    loss_fn, _ = make_losses(cfg, task)
    # one real step so the optimizer has momentum buffers to restore
    x, y = next(iter(data.train))
    loss_fn(model(x), y).backward()
    optimizer.step()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    momentum = {k: v["momentum_buffer"].clone() for k, v in optimizer.state_dict()["state"].items()}
    shuffle_state, rng = data.train.generator.get_state(), torch.get_rng_state()
    result = lr_range_test(model, optimizer, loss_fn, data.train, cpu, generators=(data.train.generator,),
                           start_lr=1e-5, end_lr=1.0, num_steps=40)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in optimizer.state_dict()["state"].items():
        assert torch.equal(v["momentum_buffer"], momentum[k])
    assert optimizer.param_groups[0]["lr"] == cfg.optim.lr
    assert torch.equal(data.train.generator.get_state(), shuffle_state) and torch.equal(torch.get_rng_state(), rng)
    assert result["lrs"][0] == pytest.approx(1e-5) and len(result["lrs"]) <= 40
    for key in ("steepest", "min_div10"):
        assert result["lrs"][0] / 10 <= result[key] <= result["lrs"][-1]
    ratios = [b / a for a, b in zip(result["lrs"], result["lrs"][1:])]
    assert max(ratios) == pytest.approx(min(ratios))  # exponential


def test_suggestions_on_a_known_curve():
    lrs = [10 ** (-6 + 6 * i / 99) for i in range(100)]  # 1e-6 .. 1
    # flat, then falls fastest around 1e-3, minimum at 1e-2, then rises
    import math
    smoothed = [2 - math.tanh((math.log10(lr) + 3) * 2) + (max(0, math.log10(lr) + 2)) ** 2 * 5 for lr in lrs]
    s = suggestions(lrs, smoothed)
    assert s["steepest"] == pytest.approx(1e-3, rel=0.2)
    assert s["min_div10"] == pytest.approx(s["lowest_loss_lr"] / 10) and 5e-3 < s["lowest_loss_lr"] < 2e-2


def test_lr_find_then_stop_or_train_with_the_suggestion(tmp_path, capsys):
    from dlcourse.training import run

    suggested_lr = run(compose_config(["lr_find.enabled=true", "lr_find.num_steps=30"]), tmp_path / "find")
    found = json.loads((tmp_path / "find" / "lr_find.json").read_text())
    assert found["suggested_lr"] == suggested_lr == found["steepest"]
    assert (tmp_path / "find" / "figures" / "lr_find.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "find" / "checkpoints").exists() and "Train with it" in capsys.readouterr().out
    applied = cli(["lr_find=true", "lr_find.apply=true", "lr_find.num_steps=30", "trainer.max_epochs=1",
                   f"hydra.run.dir={tmp_path}/apply"])
    assert applied.returncode == 0, applied.stderr
    suggested = json.loads((tmp_path / "apply" / "lr_find.json").read_text())["suggested_lr"]
    assert suggested == found["suggested_lr"]  # same seed, same data: the same test
    config = yaml.safe_load((tmp_path / "apply" / ".hydra" / "config.yaml").read_text())
    assert config["optim"]["lr"] == suggested
    ckpt = torch.load(tmp_path / "apply" / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["initial_lr"] == suggested


def test_resuming_an_applied_lr_find_reuses_its_suggestion(tmp_path, monkeypatch):
    run = ["lr_find.enabled=true", "lr_find.apply=true", "lr_find.num_steps=20", "trainer.limit_train_batches=3",
           "figures.enabled=false"]
    train(tmp_path, [*run, "trainer.max_epochs=1"])
    suggested = json.loads((tmp_path / "lr_find.json").read_text())["suggested_lr"]

    def no_second_test(*args, **kwargs):
        raise AssertionError("the range test ran again on resume")

    monkeypatch.setattr("dlcourse.lr_finder.lr_range_test", no_second_test)
    metrics = train(tmp_path, [*run, "trainer.max_epochs=2", "resume=true"])
    assert metrics["epochs_run"] == 2
    ckpt = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert ckpt["config"]["optim"]["lr"] == suggested and ckpt["state"]["history"][1]["lr"] == suggested
