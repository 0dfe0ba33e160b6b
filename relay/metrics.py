"""Prometheus exposition, read from the registry at scrape time (no per-frame cost)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .config import PASSTHROUGH
from .egress import ViewerInfo
from .registry import Registry

__all__ = ["GAUGES", "metrics_renderer"]

# Values among the relay's counters that go up and down: exported as gauges (no _total).
GAUGES = frozenset({"cluster_redis_up", "cluster_nodes", "cluster_claims_held", "cluster_edge_pulls",
                    "whip_sessions", "whep_sessions", "overload_level", "overloaded"})


class _RelayCollector:
    def __init__(self, registry: Registry, counters: Callable[[], dict[str, float]],
                 viewers_of: Callable[[str], Mapping[str, ViewerInfo]], node: str) -> None:
        self.registry = registry
        self.node = node
        self.counters = counters
        self.viewers_of = viewers_of

    def collect(self) -> Iterator[Any]:
        info = GaugeMetricFamily("relay_node_info", "This relay (a cluster's node)", labels=["node"])
        info.add_metric([self.node], 1.0)
        yield info
        up = GaugeMetricFamily("relay_stream_live", "1 when the stream's publisher is live",
                               labels=["stream", "state"])
        fps = GaugeMetricFamily("relay_stream_fps", "Source frames per second", labels=["stream"])
        frames = CounterMetricFamily("relay_stream_frames", "Source frames received",
                                     labels=["stream"])
        viewers = GaugeMetricFamily("relay_viewers", "Connected viewers",
                                    labels=["stream", "rendition"])
        encoders = GaugeMetricFamily("relay_encoders", "Running encoders", labels=["stream"])
        relay_ms = GaugeMetricFamily("relay_added_latency_ms",
                                     "Relay-added latency, arrival to first packet sent",
                                     labels=["stream", "rendition", "quantile"])
        stage_ms = GaugeMetricFamily("relay_stage_latency_ms", "Per-stage latency p95",
                                     labels=["stream", "rendition", "stage"])
        viewer_ms = GaugeMetricFamily("relay_viewer_latency_ms",
                                      "Latency each viewer reports (glass-to-glass when stamped)",
                                      labels=["stream", "viewer", "kind"])
        viewer_fps = GaugeMetricFamily("relay_viewer_fps", "Frames per second each viewer shows",
                                       labels=["stream", "viewer"])
        viewer_loss = GaugeMetricFamily("relay_viewer_loss_percent", "Packet loss per viewer",
                                        labels=["stream", "viewer"])
        dropped = CounterMetricFamily("relay_reader_dropped_frames",
                                      "Frames dropped by slow viewers' queues", labels=["stream"])
        for e in self.registry.entries.values():
            up.add_metric([e.name, e.state.value], 1.0 if e.state.value == "live" else 0.0)
            fps.add_metric([e.name], e.fps)
            frames.add_metric([e.name], e.frames_in)
            encoders.add_metric([e.name], len(e.encoders))
            drop = 0
            streams = dict(e.renditions)
            if e.passthrough is not None:
                streams[PASSTHROUGH] = e.passthrough
            for rname, stream in streams.items():
                viewers.add_metric([e.name, rname], stream.viewer_count)
                drop += sum(r.dropped for r in stream.readers)
            dropped.add_metric([e.name], drop)
            for rname, doc in e.latency.summary().items():
                for q in ("p50", "p95", "p99"):
                    v = doc["relay_ms"].get(q)
                    if v is not None:
                        relay_ms.add_metric([e.name, rname, q], v)
                for stage, s in doc["stages_ms"].items():
                    if s.get("p95") is not None:
                        stage_ms.add_metric([e.name, rname, stage], s["p95"])
            for v in self.viewers_of(e.name).values():
                rep = v.report
                if "latency_ms" in rep:
                    viewer_ms.add_metric([e.name, v.public_id, rep.get("latency_kind", "unknown")],
                                         rep["latency_ms"])
                if "fps" in rep:
                    viewer_fps.add_metric([e.name, v.public_id], rep["fps"])
                if "loss_pct" in rep:
                    viewer_loss.add_metric([e.name, v.public_id], rep["loss_pct"])
        yield from (up, fps, frames, viewers, encoders, relay_ms, stage_ms, viewer_ms,
                    viewer_fps, viewer_loss, dropped)
        for name, value in self.counters().items():
            family = GaugeMetricFamily if name in GAUGES or name.endswith("_paused") else CounterMetricFamily
            c = family(f"relay_{name}", name.replace("_", " "))
            c.add_metric([], value)
            yield c


def metrics_renderer(
    registry: Registry, counters: Callable[[], dict[str, float]],
    viewers_of: Callable[[str], Mapping[str, ViewerInfo]], node: str = "relay",
) -> Callable[[], bytes]:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_RelayCollector(registry, counters, viewers_of, node))

    def render() -> bytes:
        return bytes(generate_latest(reg))

    return render
