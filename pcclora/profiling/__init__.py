"""Parameter, MAC/FLOP and latency profiling of point-cloud models (see :mod:`pcclora.profiler`)."""

from .counting import ComputeCount, count_compute
from .latency import measure_latency
from .published import PUBLISHED_ROWS, PublishedRow
from .tokenizer_cost import tokenizer_flops_estimate

__all__ = [
    "PUBLISHED_ROWS",
    "ComputeCount",
    "PublishedRow",
    "count_compute",
    "measure_latency",
    "tokenizer_flops_estimate",
]
