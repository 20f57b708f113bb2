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
        running = GaugeMetricFamily("comfyrig_gateway_backend_running", "1 while the worker runs a prompt", labels=["backend"])
        outcomes = CounterMetricFamily("comfyrig_gateway_backend_prompts", "Prompts the worker finished, by outcome",
                                       labels=["backend", "outcome"])
        restarts = CounterMetricFamily("comfyrig_gateway_backend_restarts", "Times the worker was lost and came back",
                                       labels=["backend"])
        for backend in view["backends"]:
            name = backend["name"]
            up.add_metric([name], 1.0 if backend["live"] else 0.0)
            flight.add_metric([name], backend["in_flight"])
            queue.add_metric([name], backend["queue_remaining"])
            running.add_metric([name], 1.0 if backend["running"] else 0.0)
            for outcome in ("completed", "failed", "interrupted"):
                outcomes.add_metric([name, outcome], backend[outcome])
            restarts.add_metric([name], backend["restarts"])
        yield from (up, flight, queue, running, outcomes, restarts)
        if view.get("gpus"):
            owner = {g: b["name"] for b in view["backends"] for g in b.get("gpus", [])}
            util = GaugeMetricFamily("comfyrig_gpu_utilization_percent", "GPU busy time (NVML)", labels=["gpu", "name", "backend"])
            used = GaugeMetricFamily("comfyrig_gpu_memory_used_bytes", "GPU memory in use (NVML)", labels=["gpu", "name", "backend"])
            total = GaugeMetricFamily("comfyrig_gpu_memory_total_bytes", "GPU memory (NVML)", labels=["gpu", "name", "backend"])
            for gpu in view["gpus"]:
                labels = [str(gpu["index"]), str(gpu.get("name", "")), owner.get(gpu["index"], "")]
                if gpu.get("utilization_pct") is not None:
                    util.add_metric(labels, gpu["utilization_pct"])
                if gpu.get("memory_used_mib") is not None:
                    used.add_metric(labels, gpu["memory_used_mib"] * 2**20)
                if gpu.get("memory_total_mib") is not None:
                    total.add_metric(labels, gpu["memory_total_mib"] * 2**20)
            yield from (util, used, total)
        yield GaugeMetricFamily("comfyrig_gateway_queue_remaining", "queue_remaining summed over live workers", value=view["queue_remaining"])
        yield GaugeMetricFamily("comfyrig_gateway_clients", "Websocket clients connected", value=view["clients"])
        for key, value in view["counters"].items():
            yield CounterMetricFamily(f"comfyrig_gateway_{key}", f"Gateway counter: {key.replace('_', ' ')}", value=value)


def render_metrics(view: Mapping[str, Any]) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_FleetCollector(view))  # a collector is any object with collect()
    return generate_latest(registry).decode()
