"""From a composed Hydra config to a finished run: `run(cfg)` is what `train.py` calls."""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from dlcourse import checkpoint, distributed
from dlcourse.builders import (check_monitor, check_schedule, compile_model, dataset_info, load_weights,
                               make_callbacks, make_data, make_losses, make_model, make_optimizer, make_schedule,
                               make_settings, resolve_task, select_device)
from dlcourse.config import check_resume, validate
from dlcourse.engine import Engine, Interrupted
from dlcourse.errors import CheckpointError, ConfigError, DivergenceError, UserError
from dlcourse.runlog import RunLogger, collect_warnings, write_metrics
from dlcourse.usercode import search_dirs


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


def resume_path(resume, run_dir: Path) -> Optional[Path]:
    """null -> fresh run; true -> this run directory's last.pt; a string -> that file."""
    if resume is None or resume is False:
        last = run_dir / "checkpoints" / "last.pt"
        if last.exists():
            raise ConfigError(f"{run_dir} already holds a run (checkpoints/last.pt) and resume is not set. "
                              "Continue it with resume=true, or start a fresh run in another directory "
                              "(leave hydra.run.dir at its default).")
        return None
    if resume is True or str(resume).lower() == "true":
        last = run_dir / "checkpoints" / "last.pt"
        if not last.exists():
            raise CheckpointError(f"resume=true but {last} does not exist. Point Hydra at the run to continue: "
                                  "python train.py resume=true hydra.run.dir=outputs/<date>/<time>, "
                                  "or give a file: resume=path/to/last.pt.")
        return last
    return Path(str(resume))


def write_hydra_files(cfg: DictConfig, run_dir: Path, overrides: Optional[list[str]]) -> None:
    """`.hydra/` in the run directory, written once the config is known to be valid."""
    hydra_dir = run_dir / ".hydra"
    hydra_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, hydra_dir / "config.yaml")
    if overrides is not None:
        OmegaConf.save(OmegaConf.create(list(overrides)), hydra_dir / "overrides.yaml")


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
    """Train, evaluate the best checkpoint on the test set, write metrics.json; return the best
    value of `trainer.monitor` (for Hydra sweepers; its mean over the folds with `cv.folds` and no
    `cv.fold`). `overrides` (the command line) go to `.hydra/overrides.yaml`."""
    validate(cfg)
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig
        run_dir = Path(HydraConfig.get().runtime.output_dir)
    if cfg.cv.folds is not None and cfg.cv.fold is None:
        resolve_task(cfg, dataset_info(cfg))  # the `auto` monitor the folds are averaged on
        return run_folds(cfg, Path(run_dir), overrides)
    return run_one(cfg, Path(run_dir), overrides)


def run_folds(cfg: DictConfig, run_dir: Path, overrides: Optional[list[str]] = None) -> float:
    """Every fold of `cv.folds` in `run_dir/fold_<i>/`, then cv_metrics.json (per fold, mean, std)
    and a metrics.json of the means. With resume=true, finished folds are kept and an unfinished
    one continues from its last checkpoint."""
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
                run_one(OmegaConf.merge(cfg, {"cv": {"fold": i}, "resume": resume}), fold_dir,
                        [*fold_overrides, f"cv.fold={i}"])
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
    return mean[monitor]


def cv_job_of(cv, run_dir: Path) -> Optional[Path]:
    """The cross-validation job directory that `run_dir` is one fold of (None for any other run)."""
    if cv["folds"] is None or cv["fold"] is None or run_dir.name != f"fold_{cv['fold']}":
        return None
    return run_dir.parent if (run_dir.parent / ".hydra" / "overrides.yaml").is_file() else None


def run_one(cfg: DictConfig, run_dir: Path, overrides: Optional[list[str]] = None) -> float:
    """One training run in `run_dir` (see `run`)."""
    started = time.perf_counter()
    validate(cfg)
    t = cfg.trainer
    device = select_device(t.device)
    if distributed.init(t.strategy, device.type) and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    rank, world = distributed.rank_and_world()
    distributed.local_batch(t.batch_size)  # the global batch must divide among the processes
    if t.precision == "16-mixed" and device.type != "cuda":
        raise ConfigError("trainer.precision=16-mixed needs a CUDA GPU (float16 autocast with GradScaler); "
                          "on this device use trainer.precision=bf16-mixed or 32.")
    ckpt_path = resume_path(cfg.resume, run_dir)
    resumed = checkpoint.load(ckpt_path) if ckpt_path else None
    info = dataset_info(cfg)
    task = resolve_task(cfg, info)  # before the resume check: `auto` keys become what the run uses
    if resumed is not None:
        check_resume(resumed.get("config"), cfg, str(ckpt_path))
    check_monitor(cfg, task)
    check_schedule(cfg)
    settings = make_settings(cfg)

    with torch_flags(t.deterministic), collect_warnings() as early_warnings:
        seed_everything(cfg.seed)
        model, model_name = make_model(cfg, info, device, task)  # before the data: its errors cost no reading
        finetuning = cfg.model.get("weights") is not None and cfg.finetune.pretrained
        # model.weights (dlcourse/transfer.py); a resumed run takes every weight from its checkpoint
        transfer = load_weights(cfg, model, model_name) if resumed is None else None
        if resumed is not None:  # before any feature cache is computed from the backbone
            model.load_state_dict(resumed["model"])
        if world > 1:
            torch.manual_seed(cfg.seed + 7919 * rank)  # the same initial weights, then dropout of its own
        optimizer = make_optimizer(cfg, model)
        loss_fn, eval_loss_fn = make_losses(cfg, task)
        data, augmentation = make_data(cfg, info, device, input_stats(cfg, transfer, info, resumed))
        if cfg.lr_find.enabled:
            lr = _find_lr(cfg, model, optimizer, loss_fn, data, augmentation, device, run_dir, overrides,
                          early_warnings)
            if not cfg.lr_find.apply:
                return lr
            cfg.optim.lr = lr  # the run trains (and records) the suggested learning rate
            optimizer = make_optimizer(cfg, model)
        extra = {"config": OmegaConf.to_container(cfg, resolve=True), "classes": list(data.classes), "task": task.name,
                 "image_shape": list(data.image_shape), "model_name": model_name,
                 "code_dirs": [str(d) for d in search_dirs()],  # where `_target_`s were imported from
                 "normalization": {"mean": data.normalize.mean.flatten().tolist(),
                                   "std": data.normalize.std.flatten().tolist()}}
        forward_model = model
        if finetuning and _caching(cfg, model, augmentation):
            from dlcourse.finetune import cache_features

            seconds = time.perf_counter()
            data, forward_model = cache_features(model, data, device)  # the head trains on the backbone's features
            images = data.train.num_samples + (data.val.num_samples if data.val else 0) + data.test.num_samples
            note = (f"feature cache: the frozen backbone's {data.image_shape[0]} features of {images} images computed "
                    f"once in {time.perf_counter() - seconds:.1f} s; the head trains on them")
            print(note, flush=True)
            early_warnings.append(note)
        callbacks = make_callbacks(cfg, run_dir, model_name, model)
        finetune = next((c for c in callbacks if type(c).__name__ == "Finetune"), None)
        if finetune is not None:  # the first epoch's freeze state, seen by the summary and by DDP
            finetune.apply(model, (resumed["state"]["epoch"] if resumed else 0) + 1)
        if world > 1:  # frozen parameters are left out; a change of the trainable set wraps anew
            trained = forward_model
            forward_model = distributed.data_parallel(trained, device)
            if finetune is not None:
                finetune.rewrap = lambda: distributed.data_parallel(trained, device)
        if t.compile:
            forward_model = compile_model(forward_model, next(iter(data.train))[0])
        schedule = make_schedule(cfg, optimizer, len(data.train), settings.mode)

        if distributed.is_main():
            write_hydra_files(cfg, run_dir, overrides)
        logger = RunLogger(run_dir, progress_bar=t.progress_bar, earlier=early_warnings, enabled=distributed.is_main())
        if transfer is not None and distributed.is_main():
            write_metrics(run_dir / "transfer.json", transfer[1].as_dict())
            logger.info(f"model.weights: {transfer[1].summary()}")
            logger.writer.add_text("transfer", "```\n" + transfer[1].summary().replace("; ", "\n") + "\n```", 0)
        if not distributed.is_main():  # other ranks freeze like rank 0 and run the user's callbacks, but draw and measure nothing
            callbacks = [c for c in callbacks if type(c).__name__ == "Finetune" or hasattr(c, "config_key")]
        engine = Engine(model, optimizer, schedule, loss_fn, data, settings, device, logger, run_dir,
                        eval_loss_fn=eval_loss_fn, extra_checkpoint=extra, forward_model=forward_model,
                        batch_transform=augmentation.batch_transform, generators=(augmentation.generator,),
                        task=task, callbacks=callbacks)
        try:
            return _fit(engine, cfg, run_dir, resumed, ckpt_path, augmentation, started, overrides or [])
        except UserError as e:
            logger.to_file(f"Error: {e}")
            raise
        except Exception as e:  # not the user's: its traceback goes to the console, its message here
            logger.to_file(f"Error: {type(e).__name__}: {e}")
            raise
        finally:
            logger.close()


def _find_lr(cfg: DictConfig, model, optimizer, loss_fn, data, augmentation, device, run_dir: Path,
             overrides: Optional[list[str]], lines: list[str]) -> float:
    """The LR range test; writes lr_find.json and figures/lr_find.png; returns the suggestion."""
    from dlcourse.lr_finder import figure, lr_range_test

    opts = OmegaConf.to_container(cfg.lr_find, resolve=True)
    if opts["suggestion"] not in ("steepest", "min_div10"):
        raise ConfigError(f"lr_find.suggestion={opts['suggestion']!r} is not valid: allowed steepest, min_div10.")
    earlier = _earlier_suggestion(cfg, run_dir)
    if earlier is not None:
        return earlier
    result = lr_range_test(model, optimizer, loss_fn, data.train, device, str(cfg.trainer.precision),
                           augmentation.batch_transform, (data.train.generator, augmentation.generator), **opts)
    chosen = result[opts["suggestion"]]
    if distributed.is_main():
        write_hydra_files(cfg, run_dir, overrides)
        write_metrics(run_dir / "lr_find.json", {**result, "suggestion": opts["suggestion"], "suggested_lr": chosen})
        figure(result, run_dir / "figures" / "lr_find.png",
               f"LR range test: {cfg.model.name} on {cfg.dataset.name}, {cfg.optim._target_.rsplit('.', 1)[-1]}, "
               f"batch {cfg.trainer.batch_size} ({len(result['lrs'])} steps)")
    summary = (f"LR range test over {len(result['lrs'])} steps ({result['lrs'][0]:.1e} to {result['lrs'][-1]:.1e}): "
               f"steepest descent at {result['steepest']:.2g}, minimum / 10 = {result['min_div10']:.2g}; "
               f"{run_dir / 'figures' / 'lr_find.png'}")
    print(summary, flush=True)
    lines.append(summary)
    if not cfg.lr_find.apply:
        print(f"Train with it: python train.py optim.lr={chosen:.2g} ... (or lr_find=true lr_find.apply=true)", flush=True)
        if distributed.is_main():
            (run_dir / "train.log").write_text("\n".join(lines) + "\n")
    return chosen


def _earlier_suggestion(cfg: DictConfig, run_dir: Path) -> Optional[float]:
    """On resume with lr_find.apply: the LR the run's own range test chose (its lr_find.json), so
    the test does not run again."""
    if cfg.resume in (None, False) or not cfg.lr_find.apply:
        return None
    run = run_dir if str(cfg.resume).lower() == "true" else Path(str(cfg.resume)).resolve().parent.parent
    stored = run / "lr_find.json"
    if not stored.is_file():
        return None
    lr = float(json.loads(stored.read_text())["suggested_lr"])
    print(f"LR range test: the run's own suggestion, optim.lr={lr:.2g} (from {stored})", flush=True)
    return lr


def _fit(engine: Engine, cfg: DictConfig, run_dir: Path, resumed: Optional[dict], ckpt_path, augmentation,
         started: float, overrides: list[str]) -> float:
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
    logger.info(model_summary(engine.model, engine.extra["image_shape"], engine.device))
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


def input_stats(cfg: DictConfig, transfer, info, resumed: Optional[dict] = None) -> Optional[tuple[list, list]]:
    """The input normalisation pretrained weights were trained with (finetune.normalize=weights),
    averaged over RGB for one-channel data, or, resuming such a run, its checkpoint's; None = the
    training split's own statistics."""
    if cfg.finetune.normalize != "weights" or cfg.model.get("weights") is None or not cfg.finetune.pretrained:
        return None
    stored = (resumed or {}).get("normalization") or {}
    mean, std = (stored.get("mean"), stored.get("std")) if resumed else (transfer[0].mean, transfer[0].std)
    if mean is None or (len(info.image_shape) == 3 and resumed and len(mean) != info.image_shape[0]):
        return None  # per-pixel statistics of the data: computed again, identically
    mean, std = list(mean), list(std)
    channels = info.image_shape[0] if len(info.image_shape) == 3 else len(mean)
    if channels != len(mean):
        mean, std = [sum(mean) / len(mean)] * channels, [sum(std) / len(std)] * channels
    return mean, std


def _caching(cfg: DictConfig, model, augmentation) -> bool:
    from dlcourse.finetune import caching_applies, freeze_plan

    f = cfg.finetune
    plan = freeze_plan(model, f.freeze, f.unfreeze_at_epoch, f.unfreeze_every)
    augmented = augmentation.transform is not None or augmentation.batch_transform is not None
    return caching_applies(model, plan, cfg.trainer.max_epochs, f.bn == "frozen", augmented, f.cache_features)


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


def _finish(engine: Engine, cfg: DictConfig, run_dir: Path, started: float, overrides: list[str]) -> float:
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
    return float(st.best) if st.best is not None else float("nan")


def _interrupted(engine: Engine, run_dir: Path, signum: int) -> float:
    last = run_dir / "checkpoints" / "last.pt"
    where = f"{last} holds epoch {engine.state.epoch}" if last.exists() else "no epoch had finished yet"
    cv_job = cv_job_of(engine.extra["config"]["cv"], run_dir)  # a fold: continue the whole job (the other folds)
    engine.logger.info(f"Stopped by {signal.Signals(signum).name} during epoch {engine.state.epoch + 1}; "
                       f"the partial epoch was dropped and {where}. Continue with: python train.py "
                       f"resume=true hydra.run.dir={cv_job or run_dir}")
    raise SystemExit(128 + int(signum))
