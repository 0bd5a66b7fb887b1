"""Reading Aura's metrics as Prometheus would: with prometheus_client's own parser, from ``GET /metrics``
or straight from a :class:`aura.metrics.Metrics` registry."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from aura.metrics import Metrics

Labels = frozenset[tuple[str, str]]
TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"


def labels(**values: str) -> Labels:
    return frozenset(values.items())


@dataclass(frozen=True)
class Scrape:
    families: dict[str, Metric]  # by family name (a counter's without `_total`)
    values: dict[tuple[str, Labels], float]  # by sample name and labels

    def value(self, name: str, **label_values: str) -> float:
        """A sample's value; 0 for a series not exposed yet (a label pair never recorded)."""
        return self.values.get((name, labels(**label_values)), 0.0)

    def deltas(self, earlier: Scrape, name: str) -> dict[Labels, float]:
        """How each series of sample ``name`` moved since ``earlier``: only those that moved."""
        keys = {key for key in (*self.values, *earlier.values) if key[0] == name}
        moved = {key[1]: self.values.get(key, 0.0) - earlier.values.get(key, 0.0) for key in keys}
        return {series: delta for series, delta in moved.items() if delta}

    def delta(self, earlier: Scrape, name: str, **label_values: str) -> float:
        return self.value(name, **label_values) - earlier.value(name, **label_values)


def parse(text: str) -> Scrape:
    families = {family.name: family for family in text_string_to_metric_families(text)}
    values = {
        (sample.name, labels(**sample.labels)): sample.value for family in families.values() for sample in family.samples
    }
    return Scrape(families, values)


def of(metrics: Metrics) -> Scrape:
    body, _ = metrics.exposition(None)
    return parse(body.decode("utf-8"))


async def scrape(client: httpx.AsyncClient) -> Scrape:
    """``GET /metrics``, asserted to be the Prometheus text format, parsed."""
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == TEXT_FORMAT
    return parse(response.text)
