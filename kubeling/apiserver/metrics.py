"""apiserver_request_total and apiserver_request_duration_seconds, counted at the cost of a dict look-up.

Every request counts itself in these two. prometheus_client's labelled Counter and Histogram take a
lock and check their state on each increment (three increments a request, some 5 µs); here a
request adds to plain numbers (the server counts on its event loop thread only), and a scrape turns
them into the samples the Counter and Histogram would have exposed, in the same order, with the same
``_created`` times. Imported with prometheus_client, on the first request.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.utils import floatToGoString

REQUEST_LABELS = ("verb", "group", "version", "resource", "subresource", "code")


class _Latency:
    """One histogram series: the observations' sum and per-bucket (not cumulative) counts."""

    __slots__ = ("sum", "buckets", "created")

    def __init__(self, n_buckets: int) -> None:
        self.sum = 0.0
        self.buckets = [0.0] * n_buckets
        self.created = time.time()


class _Requests:
    """One counter series, and the histogram series its requests' latencies go to (None for watches)."""

    __slots__ = ("count", "created", "latency")

    def __init__(self) -> None:
        self.count = 0.0
        self.created = time.time()
        self.latency: _Latency | None = None


class RequestMetrics:
    """A collector for a CollectorRegistry exposing both families."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self._bounds = [float(b) for b in buckets] + [float("inf")]
        self._le = [floatToGoString(b) for b in self._bounds]
        self._requests: dict[tuple[Any, ...], _Requests] = {}  # (verb, group, version, resource, sub, code)
        self._latencies: dict[tuple[Any, ...], _Latency] = {}  # the same without the code

    def observe(self, verb: str, res: Any, sub: str, code: int, seconds: float | None) -> None:
        """Count a request (and its latency unless ``seconds`` is None, as for watches)."""
        key = (verb, res.group, res.version, res.plural, sub, code)
        series = self._requests.get(key)
        if series is None:
            series = self._requests[key] = self._new_series(key, seconds is not None)
        series.count += 1.0
        latency = series.latency
        if seconds is not None and latency is not None:
            latency.sum += seconds
            latency.buckets[bisect_left(self._bounds, seconds)] += 1.0

    def _new_series(self, key: tuple[Any, ...], timed: bool) -> _Requests:
        series = _Requests()
        if timed:  # as a Histogram's labels(): the series of these labels, made on first use
            latency = self._latencies.get(key[:5])
            if latency is None:
                latency = self._latencies[key[:5]] = _Latency(len(self._bounds))
            series.latency = latency
        return series

    def describe(self) -> list[Metric]:
        return [Metric("apiserver_request", "Counter of apiserver requests", "counter"),
                Metric("apiserver_request_duration_seconds", "Response latency distribution", "histogram")]

    def collect(self) -> Iterator[Metric]:
        requests, latency = self.describe()
        for key, series in list(self._requests.items()):
            labels = dict(zip(REQUEST_LABELS, (*key[:5], str(key[5])), strict=True))
            requests.add_sample("apiserver_request_total", labels, series.count)
            requests.add_sample("apiserver_request_created", labels, series.created)
        yield requests
        for key, hist in list(self._latencies.items()):
            labels = dict(zip(REQUEST_LABELS[:5], key, strict=True))
            acc = 0.0
            for le, n in zip(self._le, hist.buckets, strict=True):
                acc += n
                latency.add_sample("apiserver_request_duration_seconds_bucket", {**labels, "le": le}, acc)
            latency.add_sample("apiserver_request_duration_seconds_count", labels, acc)
            latency.add_sample("apiserver_request_duration_seconds_sum", labels, hist.sum)
            latency.add_sample("apiserver_request_duration_seconds_created", labels, hist.created)
        yield latency
