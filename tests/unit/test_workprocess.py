"""The pieces of embedded mode's work process that need no second process: the framed link
between `hub serve` and its child, one /metrics made of both processes' metrics, and a launch
that fails."""

from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hub.config import Settings
from hub.workprocess import Link, WorkProcess, merged_metrics


def exposition(inbound: int, pending: int, seconds: list[float]) -> bytes:
    registry = CollectorRegistry()
    counter = Counter("hub_inbound_messages", "Inbound", ["channel"], registry=registry)
    counter.labels("email").inc(inbound)
    Gauge("hub_spool_pending", "Pending", registry=registry).set(pending)
    histogram = Histogram("hub_intake_seconds", "Intake", registry=registry,
                          buckets=(0.01, 0.1))
    for value in seconds:
        histogram.observe(value)
    return generate_latest(registry)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text.decode())
            for s in family.samples if not s.name.endswith("_created")}


def test_counters_and_histograms_add_up_and_a_gauge_is_the_serving_process_s() -> None:
    own = exposition(inbound=2, pending=7, seconds=[0.005])
    child = exposition(inbound=40, pending=3, seconds=[0.05, 0.5]).decode()
    merged = samples(merged_metrics(own, child))
    assert merged[("hub_inbound_messages_total", (("channel", "email"),))] == 42
    assert merged[("hub_spool_pending", ())] == 7
    assert merged[("hub_intake_seconds_count", ())] == 3
    assert merged[("hub_intake_seconds_bucket", (("le", "0.1"),))] == 2
    assert merged[("hub_intake_seconds_bucket", (("le", "+Inf"),))] == 3


def test_without_the_child_s_figures_the_own_exposition_is_unchanged() -> None:
    own = exposition(inbound=2, pending=7, seconds=[])
    assert merged_metrics(own, None) == own


async def test_the_link_carries_messages_both_ways_and_ends_on_a_bad_frame() -> None:
    left, right = socket.socketpair()
    a = Link(*await asyncio.open_unix_connection(sock=left))
    b = Link(*await asyncio.open_unix_connection(sock=right))
    assert a.send("deliver", ids=[1, 2])
    assert await b.receive() == {"t": "deliver", "ids": [1, 2]}
    assert b.send("event", kind="message.inbound", conversation_id=5)  # a field named "kind"
    assert await a.receive() == {"t": "event", "kind": "message.inbound", "conversation_id": 5}

    a.writer.write(struct.pack("!I", 3) + b"{x}")  # not JSON
    assert await b.receive() is None
    await a.close()
    assert await b.receive() is None  # the other side is gone
    assert not a.send("deliver", ids=[3])
    await b.close()


async def test_a_child_that_cannot_be_launched_early_does_not_stop_the_start(
        settings: Settings, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # `hub serve` launches the child before it migrates; a refusal there is logged, and `start`
    # tries again as it does for any failed start, while `hub serve` answers.
    work = WorkProcess(settings)

    async def refused() -> Link:
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(work, "_exec", refused)
    await work.launch()
    assert work._launched is None
    assert "could not be launched (Resource temporarily unavailable)" in caplog.text
