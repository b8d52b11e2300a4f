"""Prometheus text-format metrics without a client library: counters, gauges, histograms.

Request counts and latencies are kept in memory (per server process); analysis counts by
status and verdict and the queue depth are read from the database at scrape time, so they
stay right across restarts and several servers.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence

LabelValues = tuple[str, ...]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ANALYSIS_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    parts = [f'{name}="{_escape(value)}"' for name, value in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Counter:
    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._values: dict[LabelValues, float] = {}
        self._lock = threading.Lock()

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        with self._lock:
            return self._values.get(labels, 0.0)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} counter"
        with self._lock:
            items = sorted(self._values.items())
        for labels, value in items:
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


class Histogram:
    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self.buckets = tuple(sorted(buckets))
        self._series: dict[LabelValues, tuple[list[int], float, int]] = {}
        self._lock = threading.Lock()

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            counts, total, count = self._series.get(labels, ([0] * len(self.buckets), 0.0, 0))
            for index, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[index] += 1
            self._series[labels] = (counts, total + value, count + 1)

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} histogram"
        with self._lock:
            items = sorted((key, (list(c), t, n)) for key, (c, t, n) in self._series.items())
        for labels, (counts, total, count) in items:
            for bound, cumulative in zip(self.buckets, counts, strict=True):
                le = f'le="{_number(bound)}"'
                yield f"{self.name}_bucket{_labels(self.label_names, labels, le)} {cumulative}"
            inf = 'le="+Inf"'
            yield f"{self.name}_bucket{_labels(self.label_names, labels, inf)} {count}"
            yield f"{self.name}_sum{_labels(self.label_names, labels)} {_number(total)}"
            yield f"{self.name}_count{_labels(self.label_names, labels)} {count}"


class Gauge:
    """A gauge whose values are read by a callback at scrape time."""

    def __init__(
        self,
        name: str,
        help_text: str,
        read: Callable[[], Mapping[LabelValues, float]],
        labels: Sequence[str] = (),
    ) -> None:
        self.name, self.help, self.label_names, self.read = name, help_text, tuple(labels), read

    def render(self) -> Iterable[str]:
        yield f"# HELP {self.name} {self.help}"
        yield f"# TYPE {self.name} gauge"
        for labels, value in sorted(self.read().items()):
            yield f"{self.name}{_labels(self.label_names, labels)} {_number(value)}"


class ServiceMetrics:
    """Every metric the service exposes."""

    def __init__(self) -> None:
        self.requests = Counter(
            "medforensics_http_requests_total",
            "HTTP requests by method, route template and status code.",
            ("method", "route", "status"),
        )
        self.request_seconds = Histogram(
            "medforensics_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ("method", "route"),
        )
        self.submitted = Counter(
            "medforensics_analyses_submitted_total", "Analyses accepted into the queue."
        )
        self.rejected = Counter(
            "medforensics_submissions_rejected_total",
            "Submissions refused, by reason (queue_full, rate_limited, too_large, unsupported...).",
            ("reason",),
        )
        self.finished = Counter(
            "medforensics_analyses_finished_total",
            "Analyses finished by this server, by status and verdict.",
            ("status", "verdict"),
        )
        self.analysis_seconds = Histogram(
            "medforensics_analysis_duration_seconds",
            "Time a worker spent on an analysis (load, detect, reports).",
            (),
            ANALYSIS_BUCKETS,
        )
        self.gauges: list[Gauge] = []

    def add_gauge(
        self,
        name: str,
        help_text: str,
        read: Callable[[], Mapping[LabelValues, float]],
        labels: Sequence[str] = (),
    ) -> None:
        self.gauges.append(Gauge(name, help_text, read, labels))

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.requests,
            self.request_seconds,
            self.submitted,
            self.rejected,
            self.finished,
            self.analysis_seconds,
        ):
            lines.extend(metric.render())
        for gauge in self.gauges:
            try:
                lines.extend(gauge.render())
            except Exception as exc:  # a database hiccup must not break the whole scrape
                lines.append(f"# {gauge.name} unavailable: {type(exc).__name__}")
        return "\n".join(lines) + "\n"
