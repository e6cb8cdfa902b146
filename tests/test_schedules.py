"""LR schedules: step by step equal to torch's schedulers on a fresh run, one meaning of warm-up,
and extension of a run (resume with a larger horizon) for every schedule."""
from __future__ import annotations

import math
import shutil

import pytest
import torch
from torch import nn
from torch.optim import lr_scheduler as lrs

from conftest import CONFIGS, train
from dlcourse.errors import ConfigError
from dlcourse.schedules import build_schedule

SCHEDS = sorted(p.stem for p in (CONFIGS / "sched").glob("*.yaml"))
MONOTONE = ("none", "step", "multistep", "exponential", "cosine", "plateau")


def optimizer(cls=torch.optim.SGD, **kw):
    torch.manual_seed(0)
    return cls(nn.Linear(3, 2).parameters(), **kw)


def ours(name, epochs=4, spe=10, metric=0.5, opt=None, **kw):
    """LRs (and first momentum) seen by each of `epochs * spe` steps."""
    opt = opt or optimizer(lr=1.0)
    sched = build_schedule(opt, name, spe, epochs, **kw)
    seen = []
    for _ in range(epochs):
        for _ in range(spe):
            seen.append(opt.param_groups[0]["lr"])
            sched.after_batch()
        sched.after_epoch(metric)
    return seen


def torchs(make, epochs=4, spe=10, opt=None):
    opt = opt or optimizer(lr=1.0)
    sched = make(opt)
    seen = []
    for _ in range(epochs * spe):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


@pytest.mark.parametrize("name,kw,make", [
    ("step", dict(step_size=2, gamma=0.1), lambda o: lrs.StepLR(o, step_size=20, gamma=0.1)),
    ("multistep", dict(milestones=[1, 3], gamma=0.5), lambda o: lrs.MultiStepLR(o, [10, 30], gamma=0.5)),
    ("exponential", dict(gamma=0.5), lambda o: lrs.ExponentialLR(o, gamma=0.5 ** 0.1)),
    ("cosine", dict(eta_min=0.01), lambda o: lrs.CosineAnnealingLR(o, T_max=40, eta_min=0.01)),
    ("onecycle", dict(pct_start=0.25), lambda o: lrs.OneCycleLR(o, max_lr=1.0, total_steps=40, pct_start=0.25)),
    ("none", dict(warmup_epochs=1.5, warmup_start_factor=0.2),
     lambda o: lrs.LinearLR(o, start_factor=0.2, total_iters=15)),
])
def test_fresh_schedules_equal_torchs(name, kw, make):
    assert ours(name, **kw) == pytest.approx(torchs(make), rel=1e-9, abs=1e-12)


def test_onecycle_cycles_adams_beta1_as_torch_does():
    mine, theirs = optimizer(torch.optim.Adam, lr=0.1), optimizer(torch.optim.Adam, lr=0.1)
    sched = build_schedule(mine, "onecycle", 5, 4)
    ref = lrs.OneCycleLR(theirs, max_lr=0.1, total_steps=20)
    for _ in range(20):
        assert mine.param_groups[0]["betas"] == pytest.approx(theirs.param_groups[0]["betas"])
        assert mine.param_groups[0]["lr"] == pytest.approx(theirs.param_groups[0]["lr"])
        sched.after_batch()
        theirs.step()
        ref.step()


def test_onecycle_leaves_plain_sgd_without_momentum():
    opt = optimizer(lr=0.1)
    build_schedule(opt, "onecycle", 5, 4).after_batch()
    assert opt.param_groups[0]["momentum"] == 0


def test_warmup_multiplies_and_keeps_milestones_in_run_epochs():
    plain = ours("multistep", milestones=[2], gamma=0.1)
    warm = ours("multistep", milestones=[2], gamma=0.1, warmup_epochs=1, warmup_start_factor=0.1)
    assert warm[0] == pytest.approx(0.1) and warm[5] == pytest.approx(0.55)
    assert warm[10:] == pytest.approx(plain[10:])  # after the warm-up: the same schedule
    assert warm[19] == 1.0 and warm[20] == pytest.approx(0.1)  # decays after epoch 2, not 3
    cos = ours("cosine", warmup_epochs=1)
    assert cos[5] == pytest.approx((0.1 + 0.9 * 0.5) * ours("cosine")[5])  # the ramp times the cosine


def test_plateau_lowers_the_lr_when_the_metric_stalls():
    seen = ours("plateau", patience=0, factor=0.5, mode="max")
    assert seen[:10] == [1.0] * 10 and seen[10] == 1.0 and seen[20] == 0.5 and seen[30] == 0.25


@pytest.mark.parametrize("kw,key", [
    (dict(name="cosine", eta_mn=0.1), "sched.eta_mn"), (dict(name="step"), "sched.step_size"),
    (dict(name="onecycle", warmup_epochs=1), "warmup_epochs"), (dict(name="cosinus"), "sched.name"),
    (dict(name="onecycle", pct_start=1.5), "sched.pct_start"),
])
def test_bad_schedule_arguments_name_the_key(kw, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        ours(kw.pop("name"), **kw)


def extended(name, **kw):
    """LRs of a run planned for 3 epochs, stopped after epoch 2, resumed for 5 epochs in all."""
    opt = optimizer(lr=1.0)
    first = build_schedule(opt, name, 10, 3, **kw)
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        first.after_batch()
    state, opt_state = first.state_dict(), opt.state_dict()
    opt2 = optimizer(lr=1.0)
    second = build_schedule(opt2, name, 10, 5, **kw)
    opt2.load_state_dict(opt_state)
    second.load_state_dict(state)
    for _ in range(30):
        seen.append(opt2.param_groups[0]["lr"])
        second.after_batch()
    return seen, second


@pytest.mark.parametrize("name", SCHEDS)
def test_extending_a_run_replans_every_schedule_without_jumping_up(name):
    kw = {"step": dict(step_size=1), "multistep": dict(milestones=[1, 3]), "exponential": dict(gamma=0.5),
          "plateau": dict(patience=0)}.get(name, {})
    seen, _ = extended(name, **kw)
    assert len(seen) == 50 and all(v >= 0 for v in seen)
    if name in MONOTONE:
        assert all(b <= a * (1 + 1e-12) for a, b in zip(seen, seen[1:])), name
    if name == "cosine":  # from where it stopped down to eta_min at the new end, not back up
        assert 0.5 * seen[19] < seen[20] <= seen[19] and seen[-1] < 0.01
    if name == "onecycle":  # stopped in the annealing phase: keeps annealing to the final LR
        assert seen[20] <= seen[19] and seen[-1] < 1e-3
    if name in ("step", "multistep", "exponential"):  # no horizon: the same as a 5-epoch plan
        assert seen == pytest.approx(ours(name, epochs=5, **kw))


def test_extending_onecycle_before_its_peak_rises_to_the_peak_of_the_new_horizon():
    opt = optimizer(lr=1.0)
    first = build_schedule(opt, "onecycle", 10, 10, pct_start=0.5)  # peak at step 49
    for _ in range(20):
        first.after_batch()
    at_stop = opt.param_groups[0]["lr"]
    second = build_schedule(opt, "onecycle", 10, 20, pct_start=0.5)  # new peak at step 99
    second.load_state_dict(first.state_dict())
    seen = []
    for _ in range(180):
        seen.append(opt.param_groups[0]["lr"])
        second.after_batch()
    assert seen[0] == pytest.approx(at_stop)
    assert max(seen) == pytest.approx(1.0) and seen.index(max(seen)) == 99 - 20
    assert seen[-1] < 1e-3


def test_resuming_with_the_same_horizon_continues_exactly():
    seen, _ = extended("cosine")
    assert seen[:20] == ours("cosine", epochs=3)[:20]
    opt = optimizer(lr=1.0)
    sched = build_schedule(opt, "onecycle", 10, 4)
    for _ in range(13):
        sched.after_batch()
    resumed = build_schedule(optimizer(lr=1.0), "onecycle", 10, 4)
    resumed.optimizer.load_state_dict(opt.state_dict())
    resumed.load_state_dict(sched.state_dict())
    for _ in range(10):
        sched.after_batch()
        resumed.after_batch()
        assert resumed.optimizer.param_groups[0]["lr"] == opt.param_groups[0]["lr"]


@pytest.mark.parametrize("sched", SCHEDS)
def test_a_real_run_extends_under_every_schedule(tmp_path, sched):
    common = [f"sched={sched}", "optim=momentum", "trainer.limit_train_batches=4"]
    if sched == "step":
        common.append("sched.step_size=1")
    if sched == "multistep":
        common.append("sched.milestones=[1,3]")
    train(tmp_path, [*common, "trainer.max_epochs=2"])
    metrics = train(tmp_path, [*common, "trainer.max_epochs=4", "resume=true"])
    assert metrics["epochs_run"] == 4
    history = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["state"]["history"]
    lrs_seen = [h["lr"] for h in history]
    assert len(lrs_seen) == 4
    if sched in MONOTONE:
        assert all(b <= a for a, b in zip(lrs_seen, lrs_seen[1:])), lrs_seen


@pytest.mark.parametrize("name,make", [
    ("cosine", lambda o: lrs.CosineAnnealingLR(o, T_max=30, eta_min=0.01)),
    ("onecycle", lambda o: lrs.OneCycleLR(o, max_lr=1.0, total_steps=30, pct_start=0.3)),
])
def test_restart_on_extension_is_a_new_cycle_over_the_added_epochs(name, make):
    kw = {"cosine": dict(eta_min=0.01), "onecycle": dict(pct_start=0.3)}[name]
    opt = optimizer(lr=1.0)
    first = build_schedule(opt, name, 10, 2, **kw)
    for _ in range(20):  # the run reached the end of its schedule
        first.after_batch()
    second = build_schedule(opt, name, 10, 5, restart=True, **kw)
    second.load_state_dict(first.state_dict())
    assert not second.at_final_lr()
    seen = []
    for _ in range(30):
        seen.append(opt.param_groups[0]["lr"])
        second.after_batch()
    assert seen == pytest.approx(torchs(make, epochs=3), rel=1e-9, abs=1e-12)
    again = build_schedule(optimizer(lr=1.0), name, 10, 5, restart=True, **kw)  # resumed within the new cycle
    again.load_state_dict(second.state_dict())
    assert again.plan == second.plan


def test_extending_a_finished_cosine_run_without_restart_is_flagged():
    opt = optimizer(lr=1.0)
    first = build_schedule(opt, "cosine", 10, 2)
    for _ in range(20):
        first.after_batch()
    second = build_schedule(opt, "cosine", 10, 5)
    second.load_state_dict(first.state_dict())
    assert second.at_final_lr() and opt.param_groups[0]["lr"] == 0.0
    halfway = build_schedule(optimizer(lr=1.0), "cosine", 10, 5)
    halfway.load_state_dict({**first.state_dict(), "step": 10})
    assert not halfway.at_final_lr()
    steady = build_schedule(optimizer(lr=1.0), "step", 10, 5, step_size=1)
    steady.load_state_dict(build_schedule(optimizer(lr=1.0), "step", 10, 2, step_size=1).state_dict())
    assert not steady.at_final_lr()  # no horizon: it goes on decaying


def test_extending_a_finished_cosine_run_warns_and_restart_trains_again(tmp_path, capsys):
    common = ["sched=cosine", "optim=sgd", "optim.lr=0.1", "trainer.limit_train_batches=3", "figures.enabled=false"]
    train(tmp_path / "a", [*common, "trainer.max_epochs=2"])
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    capsys.readouterr()
    flat = train(tmp_path / "a", [*common, "trainer.max_epochs=4", "resume=true"])
    out = capsys.readouterr().out
    assert "warning: the cosine schedule of this run had reached its end" in out
    assert "sched.restart=true" in out and f"model.weights={tmp_path / 'a' / 'checkpoints' / 'best.pt'}" in out
    history = torch.load(tmp_path / "a" / "checkpoints" / "last.pt", weights_only=True)["state"]["history"]
    assert [h["lr"] for h in history[2:]] == [0.0, 0.0]
    restarted = train(tmp_path / "b", [*common, "trainer.max_epochs=4", "resume=true", "sched.restart=true"])
    assert "reached its end" not in capsys.readouterr().out
    history = torch.load(tmp_path / "b" / "checkpoints" / "last.pt", weights_only=True)["state"]["history"]
    lrs_seen = [h["lr"] for h in history]
    # the LR each epoch started with: epochs 3-4 are a new cosine from optim.lr over their 6 steps
    assert lrs_seen == pytest.approx([0.1, 0.05, 0.1, 0.1 * (1 + math.cos(math.pi * 3 / 6)) / 2])
    assert restarted["train/loss_last"] != flat["train/loss_last"]
