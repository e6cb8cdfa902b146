"""Sweeps end in a report: per-epoch history, the ranked table, figures, the best command."""
from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, cli, compose_config, train
from dlcourse.reports import write_report


def test_every_run_writes_its_history(run_dir):
    train(run_dir, ["trainer.max_epochs=3"])
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    history = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["state"]["history"]
    for row, logged in zip(rows, history):
        for key in ("train/loss", "val/acc", "lr", "time_s"):
            assert float(row[key]) == pytest.approx(logged[key], rel=1e-9)


def test_history_of_a_resumed_run_has_every_epoch_once(run_dir):
    train(run_dir, ["trainer.max_epochs=2"])
    train(run_dir, ["trainer.max_epochs=3", "resume=true"])
    assert [int(r["epoch"]) for r in csv.DictReader((run_dir / "history.csv").open())] == [1, 2, 3]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("sweep") / "s"
    out = cli(["-m", "optim=sgd,adam", "optim.lr=0.1,0.01", "seed=0,1", "trainer.max_epochs=2",
               "trainer.limit_train_batches=5", f"hydra.sweep.dir={sweep_dir}"], timeout=600)
    assert out.returncode == 0, out.stderr
    return sweep_dir, out


def test_a_sweep_ends_with_a_ranked_report(sweep):
    sweep_dir, out = sweep
    assert "Sweep report:" in out.stdout
    rows = list(csv.DictReader((sweep_dir / "report.csv").open()))
    assert len(rows) == 4 and all(r["n"] == "2" for r in rows)
    jobs = [p for p in sweep_dir.iterdir() if (p / "metrics.json").exists()]
    assert len(jobs) == 8
    by_config = {}
    for job in jobs:
        overrides = (job / ".hydra" / "overrides.yaml").read_text()
        key = " ".join(o for o in ("optim=sgd", "optim=adam") if o in overrides) + " " + \
            next(o for o in ("optim.lr=0.1", "optim.lr=0.01") if o + "\n" in overrides)
        by_config.setdefault(key, []).append(json.loads((job / "metrics.json").read_text()))
    for row in rows:
        runs = by_config[row["configuration"]]
        vals = [m["val/acc_best"] for m in runs]
        assert float(row["val/acc mean"]) == pytest.approx(statistics.mean(vals))
        assert float(row["val/acc std"]) == pytest.approx(statistics.stdev(vals))
        tests = [m["test/acc"] for m in runs]
        assert float(row["test/acc mean"]) == pytest.approx(statistics.mean(tests))
    means = [float(r["val/acc mean"]) for r in rows]
    assert means == sorted(means, reverse=True) and [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    report = (sweep_dir / "report.md").read_text()
    assert rows[0]["configuration"] in report.split("## Best configuration")[0].split("\n|")[3]
    for png in ("report_optim.lr.png", "report_heatmap.png", "report_curves.png"):
        data = (sweep_dir / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, png
    assert list((sweep_dir / "report").glob("events.out.tfevents.*"))


def test_the_heatmap_names_both_keys_and_boxes_the_best_cell(sweep, monkeypatch):
    from dlcourse.reports import figures
    from dlcourse.reports.jobs import find_jobs
    from dlcourse.reports.table import summarize

    sweep_dir, _ = sweep
    drawn = []
    monkeypatch.setattr(figures, "_save", lambda fig, path: drawn.append(fig) or path)
    summary = summarize(find_jobs(sweep_dir))
    figures.heatmap(summary, sweep_dir / "again.png")
    title = drawn[0].axes[0].get_title()
    a, b = summary.keys[:2]
    best = summary.table.iloc[0]
    assert title.startswith(f"best {summary.monitor} by {a} and {b}")
    assert f"red box: the best, {a}={best[a]}, {b}={best[b]}" in title
    import matplotlib.pyplot as plt

    plt.close(drawn[0])  # _save, replaced here, is what closes it


def test_the_best_command_trains_the_best_configuration(sweep):
    sweep_dir, _ = sweep
    report = (sweep_dir / "report.md").read_text()
    command = report.split("## Best configuration")[1].strip().splitlines()[0].strip()
    assert command.startswith("python train.py ")
    best = next(csv.DictReader((sweep_dir / "report.csv").open()))
    cfg = compose_config(command.split()[2:])
    assert cfg.optim._target_.endswith("Adam" if best["optim"] == "adam" else "SGD")
    assert cfg.optim.lr == float(best["optim.lr"]) and cfg.trainer.max_epochs == 2
    assert cfg.trainer.limit_train_batches == 5


def test_report_script_lists_failed_and_diverged_jobs(sweep, tmp_path):
    sweep_dir, _ = sweep
    copy = tmp_path / "copy"
    shutil.copytree(sweep_dir, copy)
    jobs = sorted(p for p in copy.iterdir() if (p / "metrics.json").exists())
    (jobs[0] / "metrics.json").unlink()
    (jobs[0] / "train.log").write_text("epoch 1/2 ...\nError: something specific broke\n")
    metrics = json.loads((jobs[2] / "metrics.json").read_text())  # another configuration
    (jobs[2] / "metrics.json").write_text(json.dumps({**metrics, "diverged": True}))
    report = write_report(copy, log=lambda *_: None).read_text()
    failed = report.split("## Failed and diverged jobs")[1]
    assert f"`{jobs[0].name}`" in failed and "failed: something specific broke" in failed
    assert f"`{jobs[2].name}`" in failed and "diverged:" in failed
    rows = list(csv.DictReader((copy / "report.csv").open()))
    assert sorted(int(r["n"]) for r in rows) == [1, 1, 2, 2]  # the two jobs left out of the means
    left = [j for j in jobs if j not in (jobs[0], jobs[2])]
    means = sorted(float(r["val/acc mean"]) for r in rows)
    by_config = {}
    for job in left:  # the mean of each configuration over the jobs that finished, computed here
        key = " ".join(sorted((job / ".hydra" / "overrides.yaml").read_text().replace("- ", "").split()))
        key = " ".join(o for o in key.split() if not o.startswith("seed="))
        by_config.setdefault(key, []).append(json.loads((job / "metrics.json").read_text())["val/acc_best"])
    assert means == pytest.approx(sorted(statistics.mean(v) for v in by_config.values()))


def test_report_of_a_folder_without_runs_is_a_clear_error(tmp_path):
    res = subprocess.run([sys.executable, str(ROOT / "scripts/report.py"), str(tmp_path)], capture_output=True,
                         text=True)
    assert res.returncode == 2 and "holds no runs" in res.stderr and "Traceback" not in res.stderr


def test_joblib_launcher_runs_two_jobs_side_by_side_with_one_thread_each(tmp_path):
    sweep_dir = tmp_path / "s"
    out = cli(["-m", "hydra/launcher=joblib", "optim.lr=0.01,0.003", "trainer.max_epochs=3",
               f"hydra.sweep.dir={sweep_dir}"], timeout=600)
    assert out.returncode == 0, out.stderr
    runs = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))]
    assert len(runs) == 2 and all(r["threads"] == 1 for r in runs)
    (a0, a1), (b0, b1) = [(r["started_at"], r["finished_at"]) for r in runs]
    assert a0 < b1 and b0 < a1  # the two runs overlapped in time
    rows = {r["optim.lr"]: r for r in csv.DictReader((sweep_dir / "report.csv").open())}
    for job in sweep_dir.glob("*/metrics.json"):  # each configuration's one run, as the job wrote it
        lr = next(o.split("=")[1] for o in (job.parent / ".hydra" / "overrides.yaml").read_text().split()
                  if o.startswith("optim.lr="))
        assert float(rows[lr]["val/acc mean"]) == pytest.approx(json.loads(job.read_text())["val/acc_best"])
        assert rows[lr]["n"] == "1" and rows[lr]["val/acc std"] == ""


def test_optuna_search_completes_and_reports_its_trials(tmp_path):
    import yaml

    sweep_dir = tmp_path / "s"
    out = cli(["-m", "hparams_search=lr_wd_optuna", "hydra.sweeper.n_trials=3", "hydra.sweeper.sampler.n_startup_trials=2",
               "trainer.max_epochs=1", f"hydra.sweep.dir={sweep_dir}"], timeout=600)
    assert out.returncode == 0, out.stderr
    assert "setup plugin" not in out.stdout + out.stderr  # no alembic start-up chatter
    results = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text())
    values = [json.loads(p.read_text())["val/acc_best"] for p in sweep_dir.glob("*/metrics.json")]
    assert len(values) == 3 and results["best_value"] == pytest.approx(max(values))
    assert (sweep_dir / "report_trials.png").stat().st_size > 10_000
    report = (sweep_dir / "report.md").read_text()
    best_lr = results["best_params"]["optim.lr"]
    assert f"optim.lr={best_lr}" in report.split("## Best configuration")[1].splitlines()[2]
    assert "hparams_search" not in report.split("## Best configuration")[1].splitlines()[2]


@pytest.mark.parametrize("launcher,target", [("joblib", "JoblibLauncher"), ("slurm", "SlurmLauncher")])
def test_launcher_configs_compose_into_the_plugins(launcher, target):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.utils import get_class

    from conftest import CONFIGS

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=[f"hydra/launcher={launcher}"], return_hydra_config=True)
    node = cfg.hydra.launcher
    assert node._target_.endswith(target) and get_class(node._target_).__name__ == target
    if launcher == "slurm":
        assert node.tasks_per_node == 1 and node.timeout_min > 0 and "partition" in node
    else:
        assert node.n_jobs == -1  # the plugin's own config: one job per core, one thread each


@pytest.fixture(scope="module")
def cv_sweep(tmp_path_factory):
    """A cross-validated sweep whose middle job has a configuration error."""
    sweep_dir = tmp_path_factory.mktemp("cv_sweep") / "s"
    out = cli(["-m", "optim.lr=0.01,-1,0.003", "cv.folds=2", "trainer.max_epochs=2", "trainer.limit_train_batches=2",
               "figures.enabled=false", f"hydra.sweep.dir={sweep_dir}"], timeout=600)
    return sweep_dir, out


def test_a_job_with_a_config_error_fails_alone_and_is_reported_with_its_reason(cv_sweep):
    sweep_dir, out = cv_sweep
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "1 of 3 jobs failed" in out.stderr
    assert out.stdout.count("tensorboard --logdir") == 1 and f"tensorboard --logdir {sweep_dir}\n" in out.stdout
    jobs = {p.name.split("_", 1)[0]: p for p in sweep_dir.glob("[0-9]_*")}
    assert (jobs["0"] / "metrics.json").is_file() and (jobs["2"] / "metrics.json").is_file()  # the job after it ran
    failed_dir = jobs["1"]
    assert "Error: optim.lr=-1 is not valid" in (failed_dir / "train.log").read_text()
    report = (sweep_dir / "report.md").read_text()
    failed = report.split("## Failed and diverged jobs")[1].split("##")[0].strip().splitlines()
    assert len(failed) == 1 and failed[0].startswith(f"- `{failed_dir.name}` (optim.lr=-1 ")
    assert "failed: optim.lr=-1 is not valid: it must be a number >= 0" in failed[0]
    again = write_report(sweep_dir, log=lambda *_: None).read_text()  # scripts/report.py reads the same
    assert again.split("## Failed and diverged jobs")[1] == report.split("## Failed and diverged jobs")[1]


def test_a_cross_validated_sweep_reports_mean_and_std_over_folds_and_their_curves(cv_sweep):
    sweep_dir, _ = cv_sweep
    rows = {r["optim.lr"]: r for r in csv.DictReader((sweep_dir / "report.csv").open())}
    assert sorted(rows) == ["0.003", "0.01"]
    for lr, row in rows.items():
        folds = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*optim.lr={lr},*/fold_*/metrics.json"))]
        assert len(folds) == 2 and row["n"] == "2"
        for key, column in (("val/acc_best", "val/acc"), ("test/acc", "test/acc")):
            values = [f[key] for f in folds]
            assert float(row[f"{column} mean"]) == pytest.approx(statistics.mean(values))
            assert float(row[f"{column} std"]) == pytest.approx(statistics.stdev(values))
    report = (sweep_dir / "report.md").read_text()
    assert "over the 2 folds of each run" in report
    assert (sweep_dir / "report_curves.png").stat().st_size > 10_000
