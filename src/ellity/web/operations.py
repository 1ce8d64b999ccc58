"""The operator's endpoints: ``/ready`` (readiness) and ``/metrics`` (Prometheus), and the
timing of every request by its route.

Both are public, like ``/health``: they show no secret, no customer and no merchant data
(queues, counts and route templates only; an Ecomail budget is named by a hash of its key,
as the limiter names it). ``ELLITY_METRICS=off`` turns ``/metrics`` into a 404.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator

from litestar import MediaType, get
from litestar.enums import ScopeType
from litestar.exceptions import NotFoundException
from litestar.response import Response
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ellity.deps import Deps
from ellity.domain.services import operations
from ellity.domain.services.operations import OperationsSnapshot
from ellity.ports.operations import (
    DELIVERIES,
    ECOMAIL_RATE_LIMITED,
    HTTP_BUCKETS,
    HTTP_SECONDS,
    INTERRUPTED,
    NIGHTLY_LAST_FINISHED,
    NIGHTLY_RUNS,
    NIGHTLY_SECONDS,
    Sample,
    WorkCounters,
)
from ellity.web.dependencies import Injected, app_deps

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"  # a request no route took (never its raw path)


@get("/ready", opt={"public": True}, media_type=MediaType.JSON, include_in_schema=False)
async def ready(deps: Injected[Deps]) -> Response[dict[str, object]]:
    """200 when every check holds, else 503 naming the failed ones."""
    readiness = await operations.check_readiness(
        ping_database=deps.ping_database, schema=deps.schema, heartbeats=deps.heartbeats
    )
    body: dict[str, object] = {
        "status": "ready" if readiness.ready else "unavailable",
        "checks": dict(readiness.checks),
    }
    if not readiness.ready:
        body["failed"] = readiness.failed
    return Response(body, status_code=200 if readiness.ready else 503)


@get("/metrics", opt={"public": True}, media_type=PROMETHEUS_TEXT, include_in_schema=False)
async def metrics(deps: Injected[Deps]) -> Response[bytes]:
    if not deps.settings.metrics:
        raise NotFoundException()
    snapshot = await operations.operations_snapshot(
        queue_stats=deps.queue_stats,
        counters=deps.counters,
        budget=deps.request_budget,
        heartbeats=deps.heartbeats,
        clock=deps.clock,
    )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_SnapshotCollector(snapshot))
    return Response(generate_latest(registry), media_type=PROMETHEUS_TEXT)


class _SnapshotCollector(Collector):
    """One scrape's snapshot as metric families (built per request, registered nowhere
    else)."""

    def __init__(self, snapshot: OperationsSnapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        up = GaugeMetricFamily(
            "ellity_metrics_source_up",
            "1 when the source of these metrics answered this scrape, 0 when it did not",
            labels=["source"],
        )
        for source in ("database", "counters", "budget", "heartbeats"):
            up.add_metric([source], 0.0 if source in s.unavailable else 1.0)
        yield up
        yield from self._queues()
        if s.workers_seen is not None:
            yield GaugeMetricFamily(
                "ellity_workers_seen",
                "Worker processes whose heartbeat was seen in the last 60 s",
                value=s.workers_seen,
            )
        yield GaugeMetricFamily(
            "ellity_ecomail_budget_limit",
            "Ecomail requests Ellity allows itself per window and API key",
            value=s.budget_limit,
        )
        if s.budget_used is not None:
            used = GaugeMetricFamily(
                "ellity_ecomail_budget_used",
                "Ecomail requests taken in the current window, per API key (a hash names it)",
                labels=["account"],
            )
            for account, count in sorted(s.budget_used.items()):
                used.add_metric([account], count)
            yield used
        if s.tally is not None:
            yield from _counted(s.tally.counters, s.tally.gauges)

    def _queues(self) -> Iterator[Metric]:
        if self.snapshot.queues is None:
            return
        depth = GaugeMetricFamily(
            "ellity_queue_depth", "Pending items, due or not", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "ellity_queue_oldest_age_seconds",
            "Age of the oldest pending item (0 when none)",
            labels=["queue"],
        )
        dead = GaugeMetricFamily(
            "ellity_queue_held_by_dead_workers",
            "Pending items still claimed after the claim's lease ran out",
            labels=["queue"],
        )
        for stats in self.snapshot.queues:
            depth.add_metric([stats.queue], stats.depth)
            oldest = stats.oldest
            seconds = (self.snapshot.at - oldest).total_seconds() if oldest is not None else 0.0
            age.add_metric([stats.queue], max(0.0, seconds))
            dead.add_metric([stats.queue], stats.held_by_dead_workers)
        yield from (depth, age, dead)


def _labels(sample: Sample, *names: str) -> list[str]:
    found = dict(sample.labels)
    return [found.get(name, "") for name in names]


def _counted(counters: tuple[Sample, ...], gauges: tuple[Sample, ...]) -> Iterator[Metric]:
    by_name: defaultdict[str, list[Sample]] = defaultdict(list)
    for sample in counters:
        by_name[sample.name].append(sample)
    deliveries = CounterMetricFamily(
        "ellity_deliveries",
        "Work items handled by the workers, by kind (outbox topic or queue) and outcome",
        labels=["kind", "outcome"],
    )
    for sample in by_name[DELIVERIES]:
        deliveries.add_metric(_labels(sample, "kind", "outcome"), sample.value)
    yield deliveries
    interrupted = CounterMetricFamily(
        "ellity_interrupted_deliveries",
        "Outbox items sent again after their worker stopped during the call (possible"
        " duplicates), by kind",
        labels=["kind"],
    )
    for sample in by_name[INTERRUPTED]:
        interrupted.add_metric(_labels(sample, "kind"), sample.value)
    yield interrupted
    yield CounterMetricFamily(
        "ellity_ecomail_rate_limited",
        "429 answers from Ecomail",
        value=sum(s.value for s in by_name[ECOMAIL_RATE_LIMITED]),
    )
    runs = CounterMetricFamily(
        "ellity_nightly_runs", "Merchants' nightly runs, by outcome", labels=["outcome"]
    )
    for sample in by_name[NIGHTLY_RUNS]:
        runs.add_metric(_labels(sample, "outcome"), sample.value)
    yield runs
    yield CounterMetricFamily(
        "ellity_nightly_duration_seconds",
        "Time the finished nightly runs took, summed",
        value=sum(s.value for s in by_name[NIGHTLY_SECONDS]),
    )
    for sample in gauges:
        if sample.name == NIGHTLY_LAST_FINISHED:
            yield GaugeMetricFamily(
                "ellity_nightly_last_finished_timestamp_seconds",
                "When the latest nightly run finished (Unix time)",
                value=sample.value,
            )
    yield _latency(by_name)


def _latency(by_name: defaultdict[str, list[Sample]]) -> Metric:
    """The histogram from the per-bucket counts (each request counted in its own bucket
    only; the cumulative buckets are summed here)."""
    histogram = HistogramMetricFamily(
        "ellity_http_request_duration_seconds",
        "Time to answer a request, by method and route template",
        labels=["method", "route"],
    )
    buckets: defaultdict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    sums: defaultdict[tuple[str, str], float] = defaultdict(float)
    for sample in by_name[HTTP_SECONDS + "_bucket"]:
        method, route, le = _labels(sample, "method", "route", "le")
        buckets[method, route][le] = sample.value
    for sample in by_name[HTTP_SECONDS + "_sum"]:
        method, route = _labels(sample, "method", "route")
        sums[method, route] += sample.value
    for key, counts in sorted(buckets.items()):
        running = 0.0
        cumulative = []
        for le in (*(_le(b) for b in HTTP_BUCKETS), "+Inf"):
            running += counts.get(le, 0.0)
            cumulative.append((le, running))
        histogram.add_metric(list(key), cumulative, sums[key])
    return histogram


def _le(bucket: float) -> str:
    return repr(float(bucket))


def _bucket_of(seconds: float) -> str:
    for bucket in HTTP_BUCKETS:
        if seconds <= bucket:
            return _le(bucket)
    return "+Inf"


def record_request(counters: WorkCounters, method: str, route: str, seconds: float) -> None:
    counters.add(HTTP_SECONDS + "_bucket", method=method, route=route, le=_bucket_of(seconds))
    counters.add(HTTP_SECONDS + "_sum", seconds, method=method, route=route)


class RequestTimer:
    """Times each HTTP request to its last byte, labelled by the route's path template
    (``/webhooks/ecomail/{token:str}``), never the raw path, which holds tokens and ids."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        finished: list[float] = []

        async def timed_send(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                finished.append(time.perf_counter())

        try:
            await self.app(scope, receive, timed_send)
        finally:
            seconds = (finished[0] if finished else time.perf_counter()) - started
            route = scope.get("path_template") or UNMATCHED
            deps = app_deps(scope["app"].state)
            record_request(deps.counters, scope.get("method", "GET"), route, seconds)
