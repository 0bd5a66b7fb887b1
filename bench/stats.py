"""Order statistics: every figure in the report is a median with p90 and p99."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); ``q`` in [0, 100]."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if len(sorted_values) == 1:
        return sorted_values[0]
    rank = (len(sorted_values) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(sorted_values) - 1)
    fraction = rank - low
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * fraction


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    median: float
    p90: float
    p99: float
    p10: float
    p1: float
    min: float
    max: float
    mean: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def scaled(self, factor: float) -> Summary:
        return Summary(
            self.n,
            self.median * factor,
            self.p90 * factor,
            self.p99 * factor,
            self.p10 * factor,
            self.p1 * factor,
            self.min * factor,
            self.max * factor,
            self.mean * factor,
        )


def summarize(values: Iterable[float]) -> Summary | None:
    data = sorted(values)
    if not data:
        return None
    return Summary(
        n=len(data),
        median=percentile(data, 50),
        p90=percentile(data, 90),
        p99=percentile(data, 99),
        p10=percentile(data, 10),
        p1=percentile(data, 1),
        min=data[0],
        max=data[-1],
        mean=sum(data) / len(data),
    )


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b
