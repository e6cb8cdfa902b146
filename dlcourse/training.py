"""From a composed config to a finished run: `execute` (behind `train.py` and `dlcourse.train`) builds the
components (dlcourse/components.py), fits them and tests the best checkpoint; k-fold jobs run it per fold."""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
import os
import random
import shutil
import signal
import time
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dlcourse import checkpoint, distributed
from dlcourse.builders import dataset_info, resolve_task
from dlcourse.components import Components, Given, describe_given, from_config
from dlcourse.config import validate
from dlcourse.engine import Engine, Interrupted
from dlcourse.errors import ConfigError, DivergenceError, UserError
from dlcourse.runlog import RunLogger, collect_warnings, write_hydra_files, write_metrics


@dataclass
class Result:
    """What a run returns: `value` is the best `trainer.monitor` (what Hydra's sweepers optimise; the
    suggested LR of lr_find without apply), `metrics` its metrics.json, `history` one dict per epoch."""

    value: float
    metrics: dict
    run_dir: Path
    history: list = field(default_factory=list)
    model: Optional[torch.nn.Module] = None  # the best weights, in eval mode
    config: Optional[DictConfig] = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def torch_flags(deterministic: bool):
    """Deterministic algorithms (or cuDNN autotuning) for one run; the process-wide flags are put
    back afterwards, so one run in a process does not change the next."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, os.environ.get("CUBLAS_WORKSPACE_CONFIG"))
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # only when it changes: the call imports torch's compiler stack (about 3 s)
    if (deterministic, deterministic) != saved[:2]:
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    try:
        yield
    finally:
        if (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled()) != saved[:2]:
            torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        if saved[3] is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
        else:
            os.environ["CUBLAS_WORKSPACE_CONFIG"] = saved[3]


class _StopOnSignal:
    """SIGINT/SIGTERM ask the engine to stop after the current step instead of killing it mid-write."""

    def __init__(self, engine: Engine):
        self.engine, self.previous = engine, {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        self.engine.stop_requested = True
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def run(cfg: DictConfig, run_dir: Optional[Path] = None, overrides: Optional[list[str]] = None) -> float:
    """`execute`, returning the best value of `trainer.monitor` (for Hydra's sweepers)."""
    return execute(cfg, run_dir, overrides).value


def execute(cfg: DictConfig, run_dir: Optional[Path] = None, overrides: Optional[list[str]] = None,
            given: Given = Given()) -> Result:
    """Train, evaluate the best checkpoint on the test set, write metrics.json: the one path behind
    the command line and the Python API. With `cv.folds` and no `cv.fold`, every fold (the result
    holds their means). `overrides` (the command line) go to `.hydra/overrides.yaml`; `given`: the
    caller's objects instead of configured ones; `run_dir` None: a new `outputs/<date>/<time>`."""
    describe_given(cfg, given)
    validate(cfg)
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir()
    if cfg.cv.folds is not None and cfg.cv.fold is None:
        resolve_task(cfg, dataset_info(cfg))  # the `auto` monitor the folds are averaged on
        return run_folds(cfg, run_dir, overrides, given)
    return run_one(cfg, run_dir, overrides, given)


def new_run_dir(root: Path | str = "outputs") -> Path:
    """`outputs/<date>/<time>` as the command line names it, created here; runs started within the
    same second get `-1`, `-2`, ... so that no two share a directory."""
    stamp = datetime.now()
    base = Path(root) / stamp.strftime("%Y-%m-%d") / stamp.strftime("%H-%M-%S")
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in itertools.count():
        path = base if n == 0 else base.with_name(f"{base.name}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue


def run_folds(cfg: DictConfig, run_dir: Path, overrides: Optional[list[str]] = None, given: Given = Given()) -> Result:
    """Every fold of `cv.folds` in `run_dir/fold_<i>/`, then cv_metrics.json (per fold, mean, std)
    and a metrics.json of the means. With resume=true, finished folds are kept and an unfinished
    one continues from its last checkpoint. A given model starts each fold from its own weights."""
    validate(cfg)
    if cfg.resume not in (None, False) and str(cfg.resume).lower() != "true":
        raise ConfigError(f"resume={cfg.resume}: a cross-validation job (cv.folds without cv.fold) resumes "
                          "with resume=true in its run directory; a checkpoint path names one fold only.")
    write_hydra_files(cfg, run_dir, overrides)  # `resume=true hydra.run.dir=<this job>` finds its overrides
    fold_overrides = [o for o in overrides or [] if o.split("=", 1)[0] != "resume"]
    folds = []
    try:
        for i in range(cfg.cv.folds):
            fold_dir = run_dir / f"fold_{i}"
            if not (fold_dir / "metrics.json").exists():
                started = (fold_dir / "checkpoints" / "last.pt").exists()
                resume = True if cfg.resume is not None and started else None
                fold_given = dataclasses.replace(given, model=copy.deepcopy(given.model))
                run_one(OmegaConf.merge(cfg, {"cv": {"fold": i}, "resume": resume}), fold_dir,
                        [*fold_overrides, f"cv.fold={i}"], fold_given)
            folds.append(json.loads((fold_dir / "metrics.json").read_text()))
    except UserError:
        if not any(run_dir.glob("fold_*/.hydra")):  # stopped before any fold started: leave nothing behind
            shutil.rmtree(run_dir / ".hydra", ignore_errors=True)
        raise
    numeric = [k for k, v in folds[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    per_fold = {k: [f.get(k) for f in folds] for k in numeric}
    mean = {k: float(np.mean(v)) for k, v in per_fold.items() if None not in v}
    std = {k: float(np.std(v, ddof=1)) for k, v in per_fold.items() if None not in v}
    write_metrics(run_dir / "cv_metrics.json", {"folds": cfg.cv.folds, "per_fold": per_fold, "mean": mean, "std": std})
    write_metrics(run_dir / "metrics.json", {**mean, "cv/folds": cfg.cv.folds,
                                             **{f"{k}_std": v for k, v in std.items() if k.startswith(("test/", "val/"))}})
    write_hydra_files(cfg, run_dir, overrides)  # now with the resumed command's overrides
    monitor = f"{cfg.trainer.monitor}_best"
    print(f"cross-validation over {cfg.cv.folds} folds: {monitor} {mean[monitor]:.4f} ± {std[monitor]:.4f}, "
          f"test/acc {mean.get('test/acc', float('nan')):.4f} (mean ± std; {run_dir / 'cv_metrics.json'})", flush=True)
    return Result(mean[monitor], json.loads((run_dir / "metrics.json").read_text()), run_dir, config=cfg)


def cv_job_of(cv, run_dir: Path) -> Optional[Path]:
    """The cross-validation job directory that `run_dir` is one fold of (None for any other run)."""
    if cv["folds"] is None or cv["fold"] is None or run_dir.name != f"fold_{cv['fold']}":
        return None
    return run_dir.parent if (run_dir.parent / ".hydra" / "overrides.yaml").is_file() else None


def run_one(cfg: DictConfig, run_dir: Path, overrides: Optional[list[str]] = None, given: Given = Given()) -> Result:
    """One training run in `run_dir` (see `execute`)."""
    started = time.perf_counter()
    with torch_flags(bool(cfg.trainer.deterministic)), collect_warnings() as early_warnings:
        parts = from_config(cfg, run_dir, given, overrides, early_warnings)
        if parts.suggested_lr is not None:
            return Result(parts.suggested_lr, {"suggested_lr": parts.suggested_lr}, run_dir, config=cfg)
        return fit(parts, overrides, started, early_warnings)


def fit(parts: Components, overrides: Optional[list[str]] = None, started: Optional[float] = None,
        notes: Iterable[str] = ()) -> Result:
    """Train the components, test the best checkpoint, write metrics.json: the run's Result."""
    started = time.perf_counter() if started is None else started
    cfg, run_dir = parts.cfg, parts.run_dir
    if distributed.is_main():
        write_hydra_files(cfg, run_dir, overrides)
    logger = RunLogger(run_dir, progress_bar=cfg.trainer.progress_bar, earlier=notes, enabled=distributed.is_main())
    callbacks, transfer = parts.callbacks, parts.transfer
    if transfer is not None and distributed.is_main():
        write_metrics(run_dir / "transfer.json", transfer[1].as_dict())
        logger.info(f"model.weights: {transfer[1].summary()}")
        logger.writer.add_text("transfer", "```\n" + transfer[1].summary().replace("; ", "\n") + "\n```", 0)
    if not distributed.is_main():  # other ranks freeze like rank 0 and run the user's callbacks, but draw and measure nothing
        callbacks = [c for c in callbacks if type(c).__name__ == "Finetune" or hasattr(c, "config_key")]
    engine = Engine(parts.model, parts.optimizer, parts.schedule, parts.loss_fn, parts.data, parts.settings,
                    parts.device, logger, run_dir, eval_loss_fn=parts.eval_loss_fn, extra_checkpoint=parts.extra,
                    forward_model=parts.forward_model, batch_transform=parts.augmentation.batch_transform,
                    generators=(parts.augmentation.generator,), task=parts.task, callbacks=callbacks)
    try:
        return _fit(engine, cfg, run_dir, parts.resumed, parts.ckpt_path, parts.augmentation, started, overrides or [])
    except UserError as e:
        logger.to_file(f"Error: {e}")
        raise
    except Exception as e:  # not the user's: its traceback goes to the console, its message here
        logger.to_file(f"Error: {type(e).__name__}: {e}")
        raise
    finally:
        logger.close()


def _fit(engine: Engine, cfg: DictConfig, run_dir: Path, resumed: Optional[dict], ckpt_path, augmentation,
         started: float, overrides: list[str]) -> Result:
    data, logger = engine.data, engine.logger
    if resumed is not None:
        engine.restore(resumed)
        logger.info(f"Resumed from {ckpt_path} after epoch {engine.state.epoch} (step {engine.state.step}).")
        if engine.schedule.at_final_lr():
            logger.info(_final_lr_warning(engine, cfg, run_dir, overrides))
    elif len(data.image_shape) == 3:
        generator = getattr(data.train, "generator", None)
        state = generator.get_state() if generator is not None else None
        x, _ = next(iter(data.train))
        if state is not None:  # the peek must not shift the shuffling of the epochs
            generator.set_state(state)
        logger.images("train/images", data.normalize.invert(x[:64]))
    summary = model_summary(engine.model, engine.extra["image_shape"], engine.device)
    if cfg.trainer.summary:
        logger.info(summary)
    else:  # trainer.summary=false: a quieter console (a notebook's many runs)
        logger.to_file(summary)
    # each process evaluates its share of the validation and test sets: the console shows the whole
    val, test = distributed.sum_over_processes(torch.tensor([data.val.num_samples if data.val else 0,
                                                             data.test.num_samples], device=engine.device)).tolist()
    logger.info(f"{engine.extra['model_name']} on {cfg.dataset.name} ({engine.task.name}; {data.train.num_samples} "
                f"train / {val} val / {test} test, batch "
                f"{data.train.batch_size}), device {engine.device}, loss {cfg.loss.name}, monitor "
                f"{engine.s.monitor}, augment {augmentation}, run dir {run_dir}")
    with _StopOnSignal(engine) as stopper:
        try:
            engine.fit()
        except Interrupted:
            return _interrupted(engine, run_dir, getattr(stopper, "signum", signal.SIGINT))
        except DivergenceError:
            if distributed.is_main():
                write_metrics(run_dir / "metrics.json", {**_summary(engine, started), "diverged": True})
            raise
    return _finish(engine, cfg, run_dir, started, overrides)


def _final_lr_warning(engine: Engine, cfg: DictConfig, run_dir: Path, overrides: list[str]) -> str:
    st, lr, name = engine.state, engine.optimizer.param_groups[0]["lr"], cfg.sched.name
    kept = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("resume", "trainer.max_epochs")
            and not o.startswith("hydra.")]
    fresh = " ".join(["python train.py", *kept, f"model.weights={run_dir / 'checkpoints' / 'best.pt'}",
                      "finetune.head=keep", f"trainer.max_epochs={cfg.trainer.max_epochs - st.epoch}"])
    return (f"warning: the {name} schedule of this run had reached its end (LR {lr:.2g} at step {st.step}), so "
            f"epochs {st.epoch + 1}-{cfg.trainer.max_epochs} train at that LR and change little. For a new {name} "
            f"cycle from optim.lr={cfg.optim.lr:g} over the added epochs, add sched.restart=true (a warm restart, "
            f"SGDR); or start a new run from its weights: {fresh}")


def model_summary(model: torch.nn.Module, input_shape, device: torch.device) -> str:
    """Layer by layer: output shape and parameter count, and the totals (torchinfo)."""
    from torchinfo import summary

    was_training = model.training
    try:  # in eval mode and on a forked RNG: the probe pass changes no statistics and draws no numbers
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            text = str(summary(model, input_size=(1, *input_shape), device=device, depth=3, verbose=0, mode="eval",
                               col_names=("output_size", "num_params"), row_settings=("var_names",)))
    finally:
        model.train(was_training)
    lines = text.splitlines()
    end = next((i for i, line in enumerate(lines) if line.startswith("Non-trainable params")), len(lines) - 1)
    return "\n".join(lines[:end + 1])  # without torchinfo's memory estimates


def _summary(engine: Engine, started: float) -> dict:
    """Numbers about the run itself (not the test set), for metrics.json."""
    st = engine.state
    summary = {f"{engine.s.monitor}_best": st.best, "best_epoch": st.best_epoch, "epochs_run": st.epoch,
               "steps": st.step, "stopped_early": st.stopped_early, "diverged": False,
               "train/images_per_s": engine.train_images / engine.train_seconds if engine.train_seconds else None,
               "train/epoch_time_s": engine.train_seconds / max(engine.train_epochs, 1),
               "wall_time_s": time.perf_counter() - started, "threads": torch.get_num_threads(),
               "started_at": time.time() - (time.perf_counter() - started), "finished_at": time.time()}
    val_acc = [h["val/acc"] for h in st.history if "val/acc" in h]
    if val_acc:
        summary["val/acc_best"] = max(val_acc)
    for key in ("train/loss", "train/acc", "val/loss", "val/acc"):  # the last epoch's (over- and under-fitting)
        last = next((h[key] for h in reversed(st.history) if key in h), None)
        if last is not None:
            summary[f"{key}_last"] = last
    summary["params"] = sum(p.numel() for p in engine.model.parameters())
    return summary


def _finish(engine: Engine, cfg: DictConfig, run_dir: Path, started: float, overrides: list[str]) -> Result:
    st = engine.state
    best = run_dir / "checkpoints" / "best.pt"
    distributed.barrier()  # rank 0 has written best.pt
    if best.exists():
        engine.model.load_state_dict(checkpoint.load(best)["model"])
    metrics = {**engine.evaluate(engine.data.test, "test"), **_summary(engine, started),
               "processes": distributed.rank_and_world()[1]}
    figures = [c for c in engine.callbacks if hasattr(c, "final")]
    for c in figures:
        for path in c.final(engine):
            engine.logger.to_file(f"figure: {path}")
    if figures:
        engine.logger.info(f"figures in {run_dir / 'figures'}")
    if distributed.is_main():
        write_metrics(run_dir / "metrics.json", metrics)
    tags = [f"{engine.s.monitor}_best", *(t for t in ("val/acc", "val/loss", "train/loss") if t in st.history[-1])]
    engine.logger.hparams(OmegaConf.to_container(cfg, resolve=True), overrides, tags)
    engine.logger.info("test  " + "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith("test/")))
    engine.model.eval()
    return Result(float(st.best) if st.best is not None else float("nan"), metrics, run_dir, list(st.history),
                  engine.model, cfg)


def _interrupted(engine: Engine, run_dir: Path, signum: int) -> float:
    last = run_dir / "checkpoints" / "last.pt"
    where = f"{last} holds epoch {engine.state.epoch}" if last.exists() else "no epoch had finished yet"
    cv_job = cv_job_of(engine.extra["config"]["cv"], run_dir)  # a fold: continue the whole job (the other folds)
    engine.logger.info(f"Stopped by {signal.Signals(signum).name} during epoch {engine.state.epoch + 1}; "
                       f"the partial epoch was dropped and {where}. Continue with: python train.py "
                       f"resume=true hydra.run.dir={cv_job or run_dir}")
    raise SystemExit(128 + int(signum))
