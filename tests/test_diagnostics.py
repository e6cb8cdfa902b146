"""Diagnostics callback: every statistic checked against a hand computation on a tiny fixed MLP."""
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from dlcourse.diagnostics import Diagnostics, activation_names, layer_names

W1 = [[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]]
B1 = [0.0, 0.0, -5.0]  # unit 3 is dead for every input used below
W2 = [[1.0, 2.0, 3.0]]
B2 = [0.5]
# One batch per step 1..4; in step 2 unit 1 is dead too (x[:, 0] < 0 for every sample).
BATCHES = [
    [[1.0, 2.0], [3.0, -1.0], [0.5, 0.5]],
    [[-1.0, 2.0], [-2.0, 1.0], [-0.5, -3.0]],
    [[10.0, 20.0], [30.0, 40.0], [50.0, 60.0]],  # step 3 is not sampled: huge values would show
    [[2.0, -2.0], [1.0, 1.0], [-1.0, 4.0]],
]
SAMPLED = [1, 2, 4]  # every_n_steps=2 plus the first step of the fit


def make_model():
    model = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor(W1))
        model[0].bias.copy_(torch.tensor(B1))
        model[2].weight.copy_(torch.tensor(W2))
        model[2].bias.copy_(torch.tensor(B2))
    return model


class Recorder:
    """Stands in for a SummaryWriter: keeps add_histogram calls, accepts anything else."""

    def __init__(self):
        self.histograms = []

    def add_histogram(self, tag, values, step):
        self.histograms.append((tag, values.detach().clone(), step))

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def make_engine(model):
    return SimpleNamespace(model=model, state=SimpleNamespace(step=0),
                           logger=SimpleNamespace(writer=Recorder()))


def train_epoch(diag, engine, steps=(1, 2, 3, 4), device="cpu"):
    model = engine.model
    for s in steps:
        diag.on_step_start(engine, s)
        out = model(torch.tensor(BATCHES[s - 1], device=device))
        out.pow(2).mean().backward()
        diag.on_after_backward(engine, s)
        engine.state.step = s
        model.zero_grad(set_to_none=True)
    metrics = {}
    diag.on_epoch_end(engine, 1, metrics)
    return metrics


def hidden(s):
    """ReLU output of step s, computed without the module."""
    return torch.clamp(torch.tensor(BATCHES[s - 1]) @ torch.tensor(W1).T + torch.tensor(B1), min=0)


def hooks(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_names_follow_depth_order():
    class Step(nn.Module):  # matched by class name, as the course's own Step module will be
        def forward(self, x):
            return (x > 0).float()

    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(),
                          nn.Sequential(nn.Linear(8, 4), Step(), nn.Linear(4, 2), nn.ReLU6()))
    assert [n for n, _ in layer_names(model)] == ["layer1", "layer2", "layer3"]
    assert [type(m).__name__ for _, m in activation_names(model)] == ["ReLU", "Step", "ReLU6"]
    diag = Diagnostics(weight_norms=True)
    diag.on_fit_start(make_engine(model))
    assert diag.module_names == {"layer1": "0", "layer2": "3.0", "layer3": "3.2",
                                 "act1": "1", "act2": "3.1", "act3": "3.3"}


def test_weight_norms():
    model = make_model()
    diag = Diagnostics(weight_norms=True)
    metrics = train_epoch(diag, make_engine(model))
    assert metrics["diag/weight_norm/layer1"] == pytest.approx(math.sqrt(2.5))  # 1 + 1 + .25 + .25
    assert metrics["diag/weight_norm/layer2"] == pytest.approx(math.sqrt(14.0))
    assert metrics["diag/weight_norm/layer1"] == pytest.approx(torch.linalg.norm(model[0].weight).item())
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    assert metrics["diag/weight_norm/total"] == pytest.approx(torch.linalg.norm(flat).item())
    assert metrics["diag/weight_norm/total"] == pytest.approx(math.sqrt(2.5 + 25 + 14 + 0.25))
    assert not any(k.startswith(("diag/act", "diag/grad", "diag/dead")) for k in metrics)
    assert hooks(model) == 0


def test_activation_stats_average_the_sampled_steps_only():
    model = make_model()
    diag = Diagnostics(activations=True, every_n_steps=2)
    metrics = train_epoch(diag, make_engine(model))
    means = [hidden(s).mean().item() for s in SAMPLED]
    stds = [hidden(s).std().item() for s in SAMPLED]
    assert metrics["diag/act_mean/act1"] == pytest.approx(sum(means) / 3)
    assert metrics["diag/act_std/act1"] == pytest.approx(sum(stds) / 3)
    # Step 3 (outputs up to 110) would move the mean far above the sampled steps' values.
    assert metrics["diag/act_mean/act1"] < 3
    # Dead units: unit 3 in every step, unit 1 too in step 2 -> (1/3 + 2/3 + 1/3) / 3.
    assert metrics["diag/dead_frac/act1"] == pytest.approx(4 / 9)
    summary = diag.summary()
    assert summary["activations"] == ["act1"] and summary["layers"] == ["layer1", "layer2"]
    assert summary["act_std"] == pytest.approx([sum(stds) / 3])
    assert summary["dead_frac"] == pytest.approx([4 / 9])
    assert "grad_norm" not in summary and "weight_norm" not in summary


def test_dead_fraction_counts_channels_of_conv_outputs():
    conv = nn.Conv1d(1, 2, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[1.0]], [[1.0]]]))
        conv.bias.copy_(torch.tensor([0.0, -100.0]))  # channel 2 never fires
    model = nn.Sequential(conv, nn.ReLU())
    diag = Diagnostics(activations=True)
    engine = make_engine(model)
    diag.on_step_start(engine, 1)
    model(torch.tensor([[[1.0, -1.0, 2.0]], [[-3.0, 0.0, 4.0]]]))  # (N=2, C=1, L=3)
    diag.on_after_backward(engine, 1)
    metrics = {}
    diag.on_epoch_end(engine, 1, metrics)
    assert metrics["diag/dead_frac/act1"] == pytest.approx(0.5)


def test_gradient_norms_match_autograd():
    model = make_model()
    diag = Diagnostics(gradients=True, every_n_steps=2)
    metrics = train_epoch(diag, make_engine(model))
    params = [torch.tensor(v, requires_grad=True) for v in (W1, B1, W2, B2)]
    layer1, layer2, total = [], [], []
    for s in SAMPLED:
        w1, b1, w2, b2 = params
        out = torch.clamp(torch.tensor(BATCHES[s - 1]) @ w1.T + b1, min=0) @ w2.T + b2
        grads = torch.autograd.grad(out.pow(2).mean(), params)
        layer1.append(grads[0].norm().item())
        layer2.append(grads[2].norm().item())
        total.append(torch.cat([g.flatten() for g in grads]).norm().item())
    assert metrics["diag/grad_norm/layer1"] == pytest.approx(sum(layer1) / 3)
    assert metrics["diag/grad_norm/layer2"] == pytest.approx(sum(layer2) / 3)
    assert metrics["diag/grad_norm/total"] == pytest.approx(sum(total) / 3)
    assert diag.summary()["grad_norm"] == pytest.approx([sum(layer1) / 3, sum(layer2) / 3])


def test_histograms_have_layer_tags():
    model = make_model()
    engine = make_engine(model)
    diag = Diagnostics(histograms=True, every_n_steps=2)
    metrics = train_epoch(diag, engine)
    recorded = engine.logger.writer.histograms
    assert [tag for tag, _, _ in recorded] == ["weights/layer1", "weights/layer2",
                                               "gradients/layer1", "gradients/layer2"]
    assert all(step == 1 for _, _, step in recorded)
    assert torch.equal(recorded[0][1], model[0].weight.detach())
    # The gradient histogram is the last sampled step's (step 4).
    w1, b1, w2, b2 = (torch.tensor(v, requires_grad=True) for v in (W1, B1, W2, B2))
    out = torch.clamp(torch.tensor(BATCHES[3]) @ w1.T + b1, min=0) @ w2.T + b2
    assert torch.allclose(recorded[3][1], torch.autograd.grad(out.pow(2).mean(), w2)[0])
    assert metrics == {}


def test_everything_off_registers_nothing():
    model = make_model()
    diag = Diagnostics()
    assert not diag.enabled
    engine = make_engine(model)
    diag.on_fit_start(engine)
    diag.on_step_start(engine, 1)
    assert hooks(model) == 0
    metrics = {"train/loss": 1.0}
    train_epoch(diag, engine)
    diag.on_epoch_end(engine, 1, metrics)
    assert metrics == {"train/loss": 1.0}
    assert engine.logger.writer.histograms == [] and diag.summary() == {}


def test_hooks_live_only_during_sampled_steps_and_go_at_fit_end():
    model = make_model()
    engine = make_engine(model)
    diag = Diagnostics(activations=True, every_n_steps=2)
    diag.on_fit_start(engine)
    diag.on_step_start(engine, 1)
    assert len(model[1]._forward_hooks) == 1
    assert hooks(model) == 1  # the activation module only
    diag.on_after_backward(engine, 1)
    assert hooks(model) == 0
    diag.on_step_start(engine, 3)  # not sampled
    assert hooks(model) == 0
    diag.on_after_backward(engine, 3)
    diag.on_step_start(engine, 4)
    assert hooks(model) == 1
    diag.on_fit_end(engine)
    assert hooks(model) == 0


def test_hooks_do_not_fire_in_inference_mode():
    model = make_model()
    engine = make_engine(model)
    diag = Diagnostics(activations=True, every_n_steps=1)
    diag.on_fit_start(engine)
    diag.on_step_start(engine, 1)
    model(torch.tensor(BATCHES[0]))
    with torch.inference_mode():
        model(torch.tensor(BATCHES[2]))  # even while armed, evaluation is not counted
    diag.on_after_backward(engine, 1)
    with torch.inference_mode():
        model(torch.tensor(BATCHES[2]))  # disarmed
    metrics = {}
    diag.on_epoch_end(engine, 1, metrics)
    assert metrics["diag/act_mean/act1"] == pytest.approx(hidden(1).mean().item())
    assert metrics["diag/act_std/act1"] == pytest.approx(hidden(1).std().item())


def test_epochs_are_reported_separately():
    model = make_model()
    engine = make_engine(model)
    diag = Diagnostics(activations=True, every_n_steps=2)
    train_epoch(diag, engine)
    metrics = {}
    diag.on_step_start(engine, 6)
    model(torch.tensor(BATCHES[3]))
    diag.on_after_backward(engine, 6)
    diag.on_epoch_end(engine, 2, metrics)
    assert metrics["diag/act_mean/act1"] == pytest.approx(hidden(4).mean().item())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda():
    model = make_model().cuda()
    diag = Diagnostics(weight_norms=True, activations=True, gradients=True, every_n_steps=2)
    metrics = train_epoch(diag, make_engine(model), device="cuda")
    assert metrics["diag/dead_frac/act1"] == pytest.approx(4 / 9)
    assert metrics["diag/weight_norm/total"] == pytest.approx(math.sqrt(41.75))
    assert all(isinstance(v, float) for v in metrics.values())


def test_an_epoch_without_sampled_steps_keeps_the_last_sampled_statistics():
    model = make_model()
    engine = make_engine(model)
    diag = Diagnostics(activations=True, gradients=True, weight_norms=True, every_n_steps=2)
    train_epoch(diag, engine)
    first = diag.summary()
    diag.on_step_start(engine, 5)  # step 5 of epoch 2 is not sampled (every_n_steps=2)
    model(torch.tensor(BATCHES[0])).pow(2).mean().backward()
    diag.on_after_backward(engine, 5)
    metrics = {}
    diag.on_epoch_end(engine, 2, metrics)
    summary = diag.summary()
    assert "diag/act_std/act1" not in metrics and "diag/grad_norm/total" not in metrics
    assert summary["act_std"] == first["act_std"] and summary["grad_norm"] == first["grad_norm"]
    assert diag.sampled_epoch == {"activations": 1, "gradients": 1}


def test_depth_figures_are_drawn_when_the_last_epoch_had_no_sampled_step(tmp_path):
    from conftest import train

    train(tmp_path, ["diagnostics=full", "diagnostics.every_n_steps=100", "trainer.limit_train_batches=2",
                     "trainer.max_epochs=2"])  # only step 1 (epoch 1) is sampled
    for name in ("activations_by_depth.png", "gradients_by_depth.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 10_000, name


def test_learning_curves_of_a_short_run_label_whole_epochs(tmp_path, monkeypatch):
    from dlcourse.viz import course

    drawn = []
    monkeypatch.setattr(course, "_save", lambda fig, path: drawn.append(fig) or path)
    history = [{"epoch": e, "train/loss": 2.0 / e, "val/loss": 2.2 / e, "train/acc": 0.3 * e, "val/acc": 0.25 * e}
               for e in (1, 2, 3)]
    course.learning_curves(history, tmp_path / "c.png", "short run", best_epoch=3)
    fig = drawn[0]
    fig.canvas.draw()
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
