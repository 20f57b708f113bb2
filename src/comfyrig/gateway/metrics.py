"""The gateway's fleet view in Prometheus' text format (``GET /comfyrig/metrics``).

Rendered from the same view as ``/comfyrig/fleet`` through prometheus-client, so the
two never disagree and the exposition format is the library's, not hand-written.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["render_metrics"]


class _FleetCollector:
    def __init__(self, view: Mapping[str, Any]) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        view = self.view
        up = GaugeMetricFamily("comfyrig_gateway_backend_up", "1 while the gateway's websocket to the worker is open", labels=["backend"])
        flight = GaugeMetricFamily("comfyrig_gateway_backend_in_flight", "Prompts the gateway routed to the worker, not finished", labels=["backend"])
        queue = GaugeMetricFamily("comfyrig_gateway_backend_queue_remaining", "The worker's own queue_remaining", labels=["backend"])
        for backend in view["backends"]:
            up.add_metric([backend["name"]], 1.0 if backend["live"] else 0.0)
            flight.add_metric([backend["name"]], backend["in_flight"])
            queue.add_metric([backend["name"]], backend["queue_remaining"])
        yield from (up, flight, queue)
        yield GaugeMetricFamily("comfyrig_gateway_queue_remaining", "queue_remaining summed over live workers", value=view["queue_remaining"])
        yield GaugeMetricFamily("comfyrig_gateway_clients", "Websocket clients connected", value=view["clients"])
        for key, value in view["counters"].items():
            yield CounterMetricFamily(f"comfyrig_gateway_{key}", f"Gateway counter: {key.replace('_', ' ')}", value=value)


def render_metrics(view: Mapping[str, Any]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FleetCollector(view))  # a collector is any object with collect()
    return generate_latest(registry).decode()
