"""Prometheus metrics of the hub, on one registry that `/metrics` exposes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

INBOUND = Counter("hub_inbound_messages", "Inbound messages stored, by channel",
                  ["channel"], registry=REGISTRY)
INBOUND_DUPLICATES = Counter("hub_inbound_duplicates", "Inbound messages recognised as retries",
                             ["channel"], registry=REGISTRY)
INTAKE_SECONDS = Histogram(
    "hub_intake_seconds", "Time from accept() to commit",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge("hub_outbox_items", "Outbox items by state", ["state"], registry=REGISTRY)
DELIVERIES = Counter("hub_deliveries", "Delivery attempts by channel and outcome",
                     ["channel", "outcome"], registry=REGISTRY)
DELIVERY_FAILURES = Counter("hub_delivery_failures", "Failed delivery attempts",
                            ["channel", "kind"], registry=REGISTRY)
SPOOL_PENDING = Gauge("hub_spool_pending", "Inbound items committed but not yet worked",
                      registry=REGISTRY)
SPOOL_FAILED = Counter("hub_spool_failed", "Inbound items set aside after repeated failures",
                       registry=REGISTRY)
SPOOL_ITEMS = Gauge("hub_spool_items", "Inbound spool items by state (read at each scrape)",
                    ["state"], registry=REGISTRY)
INBOUND_MALFORMED = Counter("hub_inbound_malformed",
                            "Inbound items kept raw and flagged instead of parsed, by reason",
                            ["channel", "reason"], registry=REGISTRY)
EVENTS_DROPPED = Counter("hub_events_dropped", "Live events that did not reach every subscriber",
                         ["reason"], registry=REGISTRY)
WEBHOOK_REJECTED = Counter("hub_webhook_rejected",
                           "Provider webhooks refused for a missing or invalid signature (403)",
                           ["channel", "path", "reason"], registry=REGISTRY)
