"""Parameter, MAC/FLOP and latency profiling of point-cloud models.

The modules, one job each:

- :mod:`.model_profile`: :func:`profile` (parameters and compute of one model) and
  :func:`compute_figures` (its compute keys);
- :mod:`.counting`: one ``FlopCounterMode`` pass, split into the conventions;
- :mod:`.tokenizer_cost`: the analytic FPS + kNN estimate;
- :mod:`.latency`: wall-clock timing (round-robin over several calls) and forward latency;
- :mod:`.methods`: the methods of a run config, un-merged and merged (``tools/profile_flops.py``);
- :mod:`.published`: the published figures, per backbone (:func:`published_rows`);
- :mod:`.report`: the plain-text tables of ``tools/profile_flops.py``.

It builds on ``backbones``, ``datasets``, :mod:`pcclora.config` and :mod:`pcclora.peft` only;
the training loop imports :func:`profile` from here, never the other way round.
"""

from .counting import ComputeCount, count_compute
from .latency import measure_latency
from .model_profile import compute_figures, profile
from .published import PUBLISHED_ROWS, PublishedRow, published_rows
from .tokenizer_cost import tokenizer_flops_estimate

__all__ = [
    "PUBLISHED_ROWS",
    "ComputeCount",
    "PublishedRow",
    "compute_figures",
    "count_compute",
    "measure_latency",
    "profile",
    "published_rows",
    "tokenizer_flops_estimate",
]
