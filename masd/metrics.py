"""Prometheus metrics, all with the ``masd_`` prefix, in one registry owned by the daemon."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase

__all__ = ["Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages_accepted = Counter(
            "masd_messages_accepted", "Messages accepted, by interface", ["interface"], registry=r
        )
        self.deliveries_accepted = Counter(
            "masd_deliveries_accepted", "Deliveries (message × recipient) accepted", ["interface"], registry=r
        )
        self.requests_refused = Counter(
            "masd_requests_refused", "Submissions refused, by reason", ["interface", "reason"], registry=r
        )
        self.segments_submitted = Counter(
            "masd_segments_submitted",
            "Segments handed to a channel, by result",
            ["channel", "result"],
            registry=r,
        )
        self.receipts = Counter(
            "masd_receipts", "Delivery receipts received, by status", ["status"], registry=r
        )
        self.receipts_held = Counter(
            "masd_receipts_held", "Receipts that arrived before their submit response", registry=r
        )
        self.deliveries_final = Counter(
            "masd_deliveries_final", "Deliveries that reached a final state", ["state"], registry=r
        )
        self.queue_depth = Gauge("masd_queue_depth", "Deliveries not yet final (all nodes)", registry=r)
        self.submit_latency = Histogram(
            "masd_submit_latency_seconds",
            "Time from a claim to the channel's answer for a delivery",
            ["channel"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.replies = Counter(
            "masd_replies", "Replies (MO) received, by whether matched", ["matched"], registry=r
        )
        self.voice_calls = Counter("masd_voice_calls", "Voice calls, by outcome", ["outcome"], registry=r)
        self.channel_up = Gauge(
            "masd_channel_up", "1 while the channel's link is up", ["channel"], registry=r
        )
        self.channel_rate = Gauge(
            "masd_channel_rate",
            "Segments per second the channel sends at now: its configured rate, lower while the carrier "
            "throttles",
            ["channel"],
            registry=r,
        )
        self.recovered_claims = Counter(
            "masd_recovered_claims",
            "Claims returned to the queue after a crash or lost lease: each may be sent twice",
            registry=r,
        )
        self.retries = Counter(
            "masd_retries", "Deliveries put back for another attempt", ["channel"], registry=r
        )
        self.resends = Counter(
            "masd_resends",
            "Deliveries sent again after a failed receipt, by the channel the receipt came on",
            ["channel"],
            registry=r,
        )
        self.failovers = Counter(
            "masd_failovers",
            "Times a channel's link was down long enough for its backup to take its deliveries",
            ["channel"],
            registry=r,
        )
        self.channel_failover = Gauge(
            "masd_channel_failover",
            "1 while the channel's deliveries go to its backup",
            ["channel"],
            registry=r,
        )
        self.commit_batch = Histogram(
            "masd_store_commit_batch_size",
            "Writes per group-committed transaction",
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000),
            registry=r,
        )

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """``metric.labels(*labels)``, remembered: the per-message paths count several times a message,
        and looking the labels up costs more than the count itself."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
