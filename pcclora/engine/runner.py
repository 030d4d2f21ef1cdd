"""The two jobs the command-line tools run: train a config, and evaluate a checkpoint.

:func:`finetune` trains epochs ``0..training.max_epoch`` of the config's task (fine-tuning or
pre-training; or continues a run), evaluates after every epoch the task evaluates, keeps
``last.pth`` / ``best.pth`` and the run folder up to date, and optionally votes and exports at
the end. :func:`evaluate_checkpoint` rebuilds a model from a run checkpoint (or an official
file) and reports the task's metrics.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from backbones.checkpoint import MODEL_INFO_KEY, stored_model_info
from backbones.errors import CheckpointError, ConfigError, NonFiniteError
from pcclora.config import check_run_numbers, config_from_dict, with_absolute_paths
from pcclora.engine.checkpoint import (
    check_run_checkpoint,
    is_run_checkpoint,
    read_checkpoint_file,
    run_checkpoint_state,
    save_atomic,
)
from pcclora.engine.data import RunData, check_batch_size, train_loader
from pcclora.engine.distributed import (
    DistributedContext,
    all_gather_objects,
    barrier,
    init_distributed,
    shutdown_distributed,
)
from pcclora.engine.model import backbone_checkpoint_path, describe_trainable, starts_from_random_weights
from pcclora.engine.optim import build_optimizer
from pcclora.engine.plots import plot_curves
from pcclora.engine.progress import Progress
from pcclora.engine.run_folder import (
    RunFolder,
    RunFolderClaim,
    check_export_path,
    check_folder_path,
    default_output,
)
from pcclora.engine.schedule import CosineWarmupSchedule, build_schedule, describe_schedule
from pcclora.engine.seeding import (
    AUGMENT_STREAM,
    VOTE_STREAM,
    derive_seed,
    restore_rng_state,
    seed_everything,
    use_deterministic_algorithms,
)
from pcclora.engine.summary import best_epoch_row, build_summary, evaluated_rows, summary_line
from pcclora.engine.task import Evaluation, Task, get_task

# The built-in tasks register themselves on import (a config names one with ``task:``).
from pcclora.engine import classification, pretraining, segmentation  # noqa: E402, F401  isort: skip
from pcclora.engine.trainer import check_finite_state, nonfinite_state
from pcclora.peft import METHODS, count_parameters
from pcclora.profiling import profile


def _configure_device(config: dict[str, Any], context: DistributedContext, log: Callable[[str], None]) -> None:
    """Deterministic kernels when asked (undone by :func:`finetune` at the end); AMP only on CUDA."""
    training = config["training"]
    if training["deterministic"]:
        use_deterministic_algorithms(context.device)
    if training["amp"] and context.device.type != "cuda":
        log("note: training.amp (bf16 autocast) is CUDA only; running in fp32 on the CPU")
        training["amp"] = False


def _log_model(
    model: nn.Module,
    config: dict[str, Any],
    sample: torch.Tensor,
    context: DistributedContext,
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Log parameter counts (and compute figures when ``training.profile``); return the counts."""
    counts = count_parameters(model)
    share = 100.0 * counts["trainable"] / max(counts["total"], 1)
    log(
        f"method {config['peft']['method']}: {counts['total']:,} parameters, {counts['trainable']:,} trainable "
        f"({share:.2f}%); trainable modules: {describe_trainable(model)}"
    )
    log("parameter groups: " + ", ".join(f"{key} {value:,}" for key, value in counts["groups"].items()))
    if config["training"]["profile"] and context.is_main:
        points = sample.to(context.device)
        figures = profile(model, points)
        log(
            f"compute at batch 1, {points.shape[1]} points: {figures['macs_conv_linear'] / 1e9:.3f} G conv+linear "
            f"MACs, {figures['macs_with_attention'] / 1e9:.3f} G with attention, {figures['flops'] / 1e9:.3f} GFLOPs"
        )
    return counts


def _epoch_progress(context: DistributedContext, epoch: int, total: int, interval_s: float) -> Any:
    """The trainer's per-batch callback: a bar on a terminal, a line every ``interval_s`` otherwise."""
    progress = Progress(f"epoch {epoch}", total, enabled=context.is_main, interval_s=interval_s)

    def update(index: int, num_batches: int, loss: float) -> None:
        progress.update(index + 1, loss=loss)

    return update


def finetune(
    config: dict[str, Any],
    output: Path | str | None = None,
    resume: dict[str, Any] | None = None,
    export: Path | str | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune ``config`` and write the run folder; returns the summary (also ``summary.json``).

    Everything is checked before the first file is written — config numbers, paths, the
    backbone checkpoint, the data, the batch size, the model and, with ``resume``, that the
    run's trained tensors and optimizer state fit the model the (overridden) config builds —
    so a refused call changes no file. The run holds the folder's lock (``<output>/.lock``)
    from its first check to its end.

    Args:
        config: a resolved config (:func:`pcclora.load_config`).
        output: the run folder; None = :func:`default_output`. A new run refuses a folder that
            holds an earlier run unless ``overwrite``.
        resume: a run checkpoint (``last.pth`` read by the caller, e.g. with
            :func:`~pcclora.engine.checkpoint.load_run_for_resume`) to continue from its next epoch.
        export: write the merged model of the last epoch as ``{'base_model': state_dict}`` to this
            path; ``""`` = ``<run folder>/model_merged.pth``; None = no export.
        overwrite: start a new run in a folder that holds an earlier run, removing that run's
            files (config.yaml, log.txt, metrics.csv, summary.json, plots, checkpoints/,
            tensorboard/, model_merged.pth) once everything is checked; other files stay.

    Raises:
        ConfigError: a config value, a path, ``overwrite`` together with ``resume``, a folder
            that holds an earlier run (without ``overwrite``) or that another run has locked.
        CheckpointError: a backbone checkpoint, or ``resume`` state that does not fit the model.
        DataError: missing or malformed data files.
        NonFiniteError: the loss diverges (``last.pth`` then still holds the last good epoch).
    """
    started = time.perf_counter()
    context = init_distributed(config["training"]["device"])
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    try:
        return _finetune(config, output, resume, export, overwrite, context, started)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        shutdown_distributed(context)


def _check_exportable(config: dict[str, Any]) -> None:
    """``--export`` writes a plain backbone: refused at once for methods that do not merge completely."""
    spec = METHODS[config["peft"]["method"]]
    if spec.merge in ("none", "partial"):
        raise ConfigError(
            f"--export writes a plain backbone, but method {spec.name!r} "
            + ("does not merge" if spec.merge == "none" else "merges only in part")
            + " into the backbone's weights; leave --export out and keep the run checkpoint (checkpoints/last.pth)"
        )


def _claim_run_folder(
    root: Path, resuming: bool, overwrite: bool, context: DistributedContext
) -> RunFolderClaim | None:
    """Rank 0 opens its :class:`RunFolderClaim`; a refusal is raised on every rank alike."""
    claim, refusal = None, None
    if context.is_main:
        try:
            claim = RunFolderClaim(root, resuming, overwrite).open()
        except ConfigError as error:
            refusal = str(error)
    refusal = all_gather_objects(refusal, context)[0]
    if refusal is not None:
        raise ConfigError(refusal)
    return claim


def _load_resume_state(
    task: Task, model: nn.Module, optimizer: torch.optim.Optimizer, resume: dict[str, Any], root: Path
) -> None:
    """Put a run checkpoint's tensors, optimizer state and random state into a freshly built run.

    Raises:
        CheckpointError: the checkpoint does not fit the model or the optimizer that the config
            (with its overrides) builds.
    """
    where = root / "checkpoints" / "last.pth"
    try:
        task.load_trained_state(model, resume[task.checkpoint_entry])
    except CheckpointError as error:
        raise CheckpointError(
            f"cannot resume from {where}: {error}; --set on --resume may change training settings "
            "(training.max_epoch, ...) but not the model"
        ) from None
    try:
        optimizer.load_state_dict(resume["optimizer"])
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as error:
        raise CheckpointError(
            f"cannot resume from {where}: its optimizer state does not fit this run's trainable parameters "
            f"({type(error).__name__}: {error}); resume with the run's own config"
        ) from None
    try:
        restore_rng_state(resume["rng"])
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError) as error:
        raise CheckpointError(
            f"cannot resume from {where}: its random-generator state is damaged ({type(error).__name__}: {error}); "
            "use another checkpoint of the run"
        ) from None


@dataclass
class _PreparedRun:
    """What a run builds before it writes its first file."""

    task: Task
    data: RunData
    model: nn.Module
    counts: dict[str, Any]
    optimizer: torch.optim.Optimizer
    schedule: CosineWarmupSchedule
    messages: list[str]  # said while preparing; written to log.txt once the folder is written


def _prepare(
    config: dict[str, Any], resume: dict[str, Any] | None, root: Path, context: DistributedContext
) -> _PreparedRun:
    """Check the backbone checkpoint, read the data, build model and optimizer, load ``resume``."""
    messages: list[str] = []

    def log_early(message: str) -> None:
        if context.is_main:
            print(message, flush=True)
        messages.append(message)

    training = config["training"]
    task = get_task(config["task"])
    if training["vote"] > 0 and not task.supports_voting:
        raise ConfigError(f"training.vote is not available for task {task.name!r}; set it to 0")
    backbone_checkpoint_path(config["backbone"]["checkpoint"])  # fail before the data is read
    _configure_device(config, context, log_early)
    data = task.build_data(config, log_early)
    check_batch_size(len(data.train), training["batch_size"], context.world_size)
    log_early(task.describe_data(data))
    model = task.build_model(config, data, log_early).to(context.device)  # reads the checkpoint
    sample = task.sample_input(data, config)
    counts = _log_model(model, config, sample, context, log_early)  # a failing profile forward writes nothing
    optimizer = build_optimizer(model, config["optimizer"], training["cls_lr_scale"])
    schedule = build_schedule(config["scheduler"], config["optimizer"]["lr"])
    for line in describe_schedule(schedule, training["max_epoch"]):
        log_early(line)
    if resume is not None:
        _load_resume_state(task, model, optimizer, resume, root)
    return _PreparedRun(task, data, model, counts, optimizer, schedule, messages)


def _finetune(
    config: dict[str, Any],
    output: Path | str | None,
    resume: dict[str, Any] | None,
    export: Path | str | None,
    overwrite: bool,
    context: DistributedContext,
    started: float,
) -> dict[str, Any]:
    # Everything is checked before the first file is written, so that a refused command changes
    # no file: the cheap checks, then the folder's claim (lock, run folder rules), then _prepare.
    config = with_absolute_paths(config)
    if resume is not None and overwrite:
        raise ConfigError(
            "--overwrite starts a new run in --output and --resume continues the run there; give one of them"
        )
    check_run_numbers(config)
    if export is not None:
        _check_exportable(config)
    if export:
        check_export_path(export)
    if output is not None:
        check_folder_path(output, "--output")
    root = Path(output) if output is not None else default_output(config)
    root = Path(all_gather_objects(str(root), context)[0])  # one folder name for every rank
    claim = _claim_run_folder(root, resume is not None, overwrite, context)
    try:
        prepared = _prepare(config, resume, root, context)
    except BaseException:
        if claim is not None:
            claim.abandon()
        raise
    try:
        return _run(config, root, resume, export, context, started, claim, prepared)
    finally:
        if claim is not None:
            claim.release()


def _run(
    config: dict[str, Any],
    root: Path,
    resume: dict[str, Any] | None,
    export: Path | str | None,
    context: DistributedContext,
    started: float,
    claim: RunFolderClaim | None,
    prepared: _PreparedRun,
) -> dict[str, Any]:
    """Write the run folder and train: the part of a run that changes files."""
    training = config["training"]
    seed = training["seed"]
    task, data, model, counts = prepared.task, prepared.data, prepared.model, prepared.counts
    optimizer, schedule = prepared.optimizer, prepared.schedule
    folder_messages = claim.commit() if claim is not None else []
    run = RunFolder(root, active=context.is_main, use_tensorboard=training["tensorboard"])
    run.write_config(config)
    run.log(
        f"run folder: {run.root}  (config {config['name']}, seed {seed}, device {context.device}, "
        f"processes {context.world_size})"
    )
    for message in folder_messages:
        run.log(message)
    for message in prepared.messages:
        run.log(message, echo=False)

    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume is not None:
        restore_rng_state(resume["rng"])
        history = [dict(row) for row in resume["history"]]
        start_epoch = resume["epoch"] + 1
        run.log(f"resumed from epoch {resume['epoch']}; continuing with epoch {start_epoch}")

    core = model
    if context.enabled:
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(core, device_ids=device_ids)
    test_data = task.eval_loader(data, config, context)
    num_classes = task.output_classes(core, data)
    info = task.model_info(config, core, data)
    trained_keys = task.trained_keys(core)
    max_epoch = training["max_epoch"]
    status = "finished"
    vote: Evaluation | None = None
    last_evaluation: Evaluation | None = None
    epoch = start_epoch
    stage = "loss"  # what a NonFiniteError is about: loss, weights, logits (test) or vote logits
    phase = "epoch"  # what Ctrl-C interrupts: an epoch, the final voting evaluation, the export
    try:
        for epoch in range(start_epoch, max_epoch + 1):
            epoch_started = time.perf_counter()
            seed_everything(derive_seed(seed, epoch, context.rank))
            generator = torch.Generator().manual_seed(derive_seed(seed, epoch, context.rank, AUGMENT_STREAM))
            lr = schedule.apply(optimizer, epoch)
            loader = train_loader(data.train, training["batch_size"], seed, epoch, context, training["num_workers"])
            stage = "loss"
            figures = task.train_epoch(
                model,
                core,
                loader,
                optimizer,
                config,
                generator,
                context,
                epoch,
                _epoch_progress(context, epoch, len(loader), training["progress_interval"]),
            )
            # An epoch is saved only when its trained tensors are finite and its evaluation gave
            # finite logits: a NaN can reach the weights in the epoch's last step before any loss shows it.
            stage = "weights"
            check_finite_state(core, optimizer, epoch, context, trained_keys)
            stage = "logits"
            if task.evaluates_after(epoch, config):
                evaluation = task.evaluate(model, test_data, config, context)
            else:
                evaluation = Evaluation(metrics=dict.fromkeys((metric.key for metric in task.metrics), None))
            row = {
                "epoch": epoch,
                "lr": lr,
                **figures,
                **evaluation.metrics,
                "epoch_seconds": time.perf_counter() - epoch_started,
            }
            _commit_epoch(run, task, core, optimizer, config, history, row, context, info)
            if task.evaluates_after(epoch, config):
                last_evaluation = evaluation
            if context.is_main:
                run.add_scalars(row)
                plot_curves(history, run.root / "curves.png", task.metrics)
            barrier(context)
        if training["vote"] > 0:
            stage, phase = "vote logits", "final voting evaluation"
            generator = torch.Generator().manual_seed(derive_seed(seed, VOTE_STREAM, context.rank))
            vote = task.vote(model, test_data, config, training["vote"], generator, context)
            figures_text = "  ".join(f"{m.label} {vote.metrics[m.key]:.2f}" for m in task.metrics)
            run.log(f"voting ({training['vote']} votes, logits averaged, one run): {figures_text}")
        if export is not None and context.is_main:
            phase = "export"
            path = task.export(core, Path(export or run.root / task.export_name), info)
            run.log(f"exported {task.export_description} to {path}")
    except KeyboardInterrupt:
        status = "interrupted"
        if not history and resume is None:  # nothing to resume: leave no half-made run behind
            run.close()
            removed = claim.discard() if claim is not None else "nothing was written"
            if context.is_main:
                print(
                    f"interrupted during epoch {epoch}, before any epoch finished: there is nothing to resume; "
                    f"{removed}",
                    flush=True,
                )
            elapsed = time.perf_counter() - started
            return build_summary(config, history, num_classes, counts, status, str(root), None, elapsed, task.metrics)
        run.log(_interrupted_message(phase, epoch, history, run, task.tool))
    except NonFiniteError as error:
        status = f"stopped: non-finite {stage}"
        message = _nonfinite_message(error, stage, epoch, history, run, task.primary.key)
        run.log(f"error: {message}", echo=False)  # the tools print it once, as every error
        _finish(run, task, config, history, num_classes, counts, status, vote, last_evaluation, data, started)
        raise NonFiniteError(message) from None
    return _finish(run, task, config, history, num_classes, counts, status, vote, last_evaluation, data, started)


def _commit_epoch(
    run: RunFolder,
    task: Task,
    core: nn.Module,
    optimizer: torch.optim.Optimizer,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    row: dict[str, Any],
    context: DistributedContext,
    info: dict[str, Any],
) -> None:
    """Save an evaluated epoch and log it, as one unit; ``history`` gains ``row`` once ``last.pth`` holds it.

    ``best.pth`` is written before ``last.pth``: the epoch is done when ``last.pth`` (what
    --resume reads) holds it, and a resumed run redoes an epoch that ``best.pth`` got ahead of.
    Ctrl-C (SIGINT) is held back until the epoch's log line is written, and the line is written
    even when something else interrupts the unit after ``last.pth`` was saved.
    """
    key = task.primary.key
    evaluated = evaluated_rows(history, key)
    improved = row[key] is not None and (not evaluated or row[key] > max(old[key] for old in evaluated))
    with _sigint_held():
        if context.is_main:
            trained = (task.checkpoint_entry, task.trained_state(core))
            state = run_checkpoint_state(core, optimizer, config, row["epoch"], [*history, row], info, trained)
            if improved:
                save_atomic(state, run.best_checkpoint)
            save_atomic(state, run.last_checkpoint)
        history.append(row)
        best = best_epoch_row(history, key) if evaluated_rows(history, key) else None
        try:
            run.write_metrics(history)
        finally:
            run.log(task.epoch_line(row, best, config["training"]["max_epoch"]))


@contextmanager
def _sigint_held() -> Iterator[None]:
    """Hold Ctrl-C back while the block runs and deliver it at the end (main thread only)."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield  # handlers can be set only in the main thread; None: a handler not set from Python
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        if callable(previous):
            previous(signal.SIGINT, None)  # the default handler raises KeyboardInterrupt
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt


def _interrupted_message(phase: str, epoch: int, history: list[dict[str, Any]], run: RunFolder, tool: str) -> str:
    """What Ctrl-C stopped and which epoch ``last.pth`` holds (the last one whose checkpoint exists).

    Only for runs with a saved epoch: a new run interrupted before it has one is removed instead.
    """
    saved = history[-1]["epoch"]
    if phase != "epoch":
        what = f"interrupted during the {phase}"
    elif saved == epoch:
        what = f"interrupted after epoch {epoch} was saved"
    else:
        what = f"interrupted during epoch {epoch}"
    return (
        f"{what}: {run.last_checkpoint} holds epoch {saved}, the last finished one; "
        f"continue with: python tools/{tool}.py --output {run.root} --resume"
    )


def _nonfinite_message(
    error: NonFiniteError, stage: str, epoch: int, history: list[dict[str, Any]], run: RunFolder, key: str
) -> str:
    """Why the run stopped, which checkpoints are kept (never a non-finite one), what to do."""
    if stage == "vote logits":
        return f"{error} in the final voting evaluation; the checkpoints of the run are kept as they were"
    if stage == "logits":
        error = NonFiniteError(f"{error} after epoch {epoch}: training stopped")
    if history:
        kept = f"the last good checkpoint is kept: {run.last_checkpoint} (epoch {history[-1]['epoch']})"
        if evaluated_rows(history, key):
            kept += f", and {run.best_checkpoint} (epoch {best_epoch_row(history, key)['epoch']})"
        kept += "; their weights and test logits are finite"
    else:
        kept = "no epoch ended with finite values, so no checkpoint was written"
    return (
        f"{error}; epoch {epoch} is not saved; {kept}; lower optimizer.lr or training.grad_clip and continue "
        "with --resume, or start again"
    )


def _finish(
    run: RunFolder,
    task: Task,
    config: dict[str, Any],
    history: list[dict[str, Any]],
    num_classes: int,
    counts: dict[str, Any],
    status: str,
    vote: Evaluation | None,
    last_evaluation: Evaluation | None,
    data: RunData,
    started: float,
) -> dict[str, Any]:
    """Write summary.json and the task's figures, print the final summary; return the summary."""
    summary = build_summary(
        config,
        history,
        num_classes,
        counts,
        status,
        str(run.root),
        None if vote is None else vote.metrics,
        time.perf_counter() - started,
        task.metrics,
    )
    if history:
        run.write_metrics(history)  # complete even when an interruption came between a save and its row
    run.write_summary(summary)
    if run.active and last_evaluation is not None:
        evaluated = evaluated_rows(history, task.primary.key)
        task.final_figures(run.root, last_evaluation, data, num_classes, evaluated[-1]["epoch"])
    if history:
        random_backbone = task.warn_random_backbone and starts_from_random_weights(config)
        run.log(summary_line(summary, random_backbone, task.metrics))
    run.close()
    return summary


def evaluate_checkpoint(
    checkpoint_path: Path | str,
    config: dict[str, Any] | None = None,
    overrides: Sequence[str] = (),
    votes: int = 0,
    export: Path | str | None = None,
    data_root: str | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Accuracy of a run checkpoint (or an official fine-tuned model, which needs ``config``).

    Args:
        checkpoint_path: ``<run>/checkpoints/best.pth`` or ``last.pth``; or an official
            ``{'base_model': ...}`` file.
        config: the config for an official file; for a run checkpoint its saved config is used.
        overrides: ``--set`` strings applied to the checkpoint's saved config.
        votes: also run N-vote averaging (see :mod:`pcclora.engine.evaluate`); 0 = off.
        export: write the merged model as ``{'base_model': ...}`` here.

    Returns:
        ``{"checkpoint", "method", "num_samples", "oa", "macc", "per_class", "metric_labels"}``
        (``per_class``: one ``{"class", "samples", "accuracy"}`` per class; a pre-training
        checkpoint has ``probe_oa``, ``probe_macc`` for ``oa``, ``macc``; ``metric_labels``: how
        to print each figure) plus ``vote_oa``, ``vote_macc``, ``votes`` when voting ran and
        ``export`` when exported.
    """
    checkpoint = read_checkpoint_file(checkpoint_path)
    run_checkpoint = is_run_checkpoint(checkpoint)
    if run_checkpoint:
        check_run_checkpoint(checkpoint, checkpoint_path)
        saved = checkpoint["config"]
        config = config_from_dict(saved, list(overrides), name=saved.get("name", "config"))
    elif config is None:
        raise ConfigError(
            f"{checkpoint_path} is not a pcclora run checkpoint; to evaluate an official fine-tuned "
            "model give its config too (--cfg scanobjectnn_hardest.yaml ...)"
        )
    if data_root is not None:
        config["dataset"]["root"] = data_root
    if device is not None:
        config["training"]["device"] = device
    check_run_numbers(config)
    task = get_task(config["task"])
    if votes > 0 and not task.supports_voting:
        raise ConfigError(f"--votes is not available for task {task.name!r}")
    if export is not None:
        if run_checkpoint:
            _check_exportable(config)
        check_export_path(export)
    context = init_distributed(config["training"]["device"])
    try:
        data = task.build_data(config, lambda message: None, with_train=False)
        if run_checkpoint:
            model = task.build_model(config, data, lambda message: None)
            task.load_trained_state(model, checkpoint[task.checkpoint_entry])
            method = config["peft"]["method"]
            bad = nonfinite_state(model, keys=task.trained_keys(model))
            if bad:
                raise NonFiniteError(
                    f"checkpoint {checkpoint_path} (epoch {checkpoint['epoch']}) holds NaN or Inf in "
                    f"{', '.join(bad[:5])}{' and more' if len(bad) > 5 else ''}; it was saved by a run that diverged, "
                    "so it has no accuracy; use a checkpoint of an earlier epoch"
                )
        else:
            model = task.load_model_file(Path(checkpoint_path), config, data)
            method = "official checkpoint"
        model.to(context.device)
        training = config["training"]
        loader = task.eval_loader(data, config, context)
        progress = Progress("test", len(loader), context.is_main, training["progress_interval"])
        try:
            evaluation = task.evaluate(model, loader, config, context, progress)
        except NonFiniteError as error:
            raise NonFiniteError(
                f"checkpoint {checkpoint_path}: {error}; an evaluation with non-finite logits is not a score; "
                "use a checkpoint of an earlier epoch"
            ) from None
        result: dict[str, Any] = {
            "checkpoint": str(checkpoint_path),
            "method": method,
            "num_samples": len(data.test),
            **{metric.name: evaluation.metrics[metric.key] for metric in task.metrics},
            **task.details_report(evaluation, data),
            "metric_labels": {metric.name: metric.label for metric in task.metrics},
        }
        if run_checkpoint:
            result["epoch"] = checkpoint["epoch"]
        if votes > 0:
            generator = torch.Generator().manual_seed(derive_seed(training["seed"], VOTE_STREAM, context.rank))
            vote = task.vote(model, loader, config, votes, generator, context)
            result.update({f"vote_{metric.name}": vote.metrics[metric.key] for metric in task.metrics}, votes=votes)
        if export is not None and context.is_main:
            info = stored_model_info(checkpoint) or task.model_info(config, model, data)
            if run_checkpoint:
                task.export(model, Path(export), info)
            else:
                save_atomic({"base_model": model.state_dict(), MODEL_INFO_KEY: info}, export)
            result["export"] = str(export)
        return result
    finally:
        shutdown_distributed(context)
