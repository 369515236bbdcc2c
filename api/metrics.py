"""The API's own Prometheus metrics: requests and latency by route template.

A plain ASGI middleware (no per-request task or body buffering); the label is the matched
route's path template (`/v1/devices/{device_id}`), never the raw path, so label cardinality
stays bounded. Unmatched paths count under `unmatched`.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REGISTRY = CollectorRegistry(auto_describe=True)
REQUESTS = Counter(
    "gridshare_api_requests_total",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "gridshare_api_request_seconds",
    "Time to the response's first byte, by method and route template.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
    registry=REGISTRY,
)
STREAM_CLIENTS = Gauge(
    "gridshare_api_stream_clients", "Connected /v1/stream clients.", registry=REGISTRY
)
STREAM_EVENTS = Counter(
    "gridshare_api_stream_events_total",
    "Device update events fanned out to stream clients (one per device per batch).",
    registry=REGISTRY,
)
CHAIN_READS = Counter(
    "gridshare_api_chain_reads_total",
    "Contract calls made (cache misses), by outcome.",
    ["outcome"],
    registry=REGISTRY,
)


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        observed = False

        def observe() -> None:
            nonlocal observed
            if observed:
                return
            observed = True
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            LATENCY.labels(method, template).observe(time.perf_counter() - started)
            REQUESTS.labels(method, template, str(status)).inc()

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                await send(message)
                observe()
                return
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            observe()
