"""The fine-tuning engine: one module per job.

- :mod:`~pcclora.engine.schedule` per-epoch cosine lr with warm-up (timm semantics)
- :mod:`~pcclora.engine.optim` AdamW with the reference's weight-decay groups
- :mod:`~pcclora.engine.data` datasets, loaders, per-epoch seeding
- :mod:`~pcclora.engine.model` backbone + peft method, rebuilt reproducibly
- :mod:`~pcclora.engine.trainer` one training epoch
- :mod:`~pcclora.engine.evaluate` test accuracy, N-vote averaging
- :mod:`~pcclora.engine.metrics` OA, mean class accuracy, confusion
- :mod:`~pcclora.engine.checkpoint` atomic run checkpoints of trained tensors
- :mod:`~pcclora.engine.run_folder`, :mod:`~pcclora.engine.plots` the run's files
- :mod:`~pcclora.engine.distributed` DDP under torchrun
- :mod:`~pcclora.engine.runner` :func:`finetune` and :func:`evaluate_checkpoint`
"""

from pcclora.engine.runner import evaluate_checkpoint, export_merged, finetune, load_run_for_resume

__all__ = ["evaluate_checkpoint", "export_merged", "finetune", "load_run_for_resume"]
