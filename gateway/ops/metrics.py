"""A small Prometheus registry (counters, gauges, histograms) rendered in the text format."""

from __future__ import annotations

import bisect
from collections import defaultdict

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

_HELP = {
    "paht_messages_accepted_total": "Inbound messages stored for processing",
    "paht_messages_duplicate_total": "Redeliveries of messages already stored",
    "paht_messages_rejected_total": "Webhook requests refused (signature, body, size)",
    "paht_pipeline_seconds": "Time from acknowledgement to processed event",
    "paht_queue_depth": "Inbound events not processed yet",
    "paht_outbox_pending": "Outbox rows waiting for delivery",
    "paht_events_failed_total": "Pipeline failures (retried or parked)",
    "paht_outbox_sent_total": "Outbox deliveries that succeeded",
    "paht_outbox_failed_total": "Outbox delivery attempts that failed",
}


def _key(labels: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class Metrics:
    """Process-local metrics; one instance per app."""

    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self.gauges: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
        self.hists: dict[str, dict[tuple[tuple[str, str], ...], list[float]]] = defaultdict(dict)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add to a counter."""
        series = self.counters[name]
        k = _key(labels)
        series[k] = series.get(k, 0.0) + value

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        self.gauges[name][_key(labels)] = value

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation in a histogram."""
        series = self.hists[name]
        k = _key(labels)
        state = series.get(k)
        if state is None:
            state = series[k] = [0.0] * (len(_BUCKETS) + 2)  # buckets..., count, sum
        idx = bisect.bisect_left(_BUCKETS, value)
        for i in range(idx, len(_BUCKETS)):
            state[i] += 1
        state[-2] += 1
        state[-1] += value

    def value(self, name: str, **labels: str) -> float:
        """A counter's or gauge's current value (0 when absent)."""
        k = _key(labels)
        return self.counters.get(name, {}).get(k, self.gauges.get(name, {}).get(k, 0.0))

    def render(self) -> str:
        """The Prometheus text exposition format."""
        out: list[str] = []

        def fmt(labels: tuple[tuple[str, str], ...], extra: str = "") -> str:
            parts = [f'{k}="{v}"' for k, v in labels]
            if extra:
                parts.append(extra)
            return "{" + ",".join(parts) + "}" if parts else ""

        scalars: tuple[tuple[str, dict[str, dict[tuple[tuple[str, str], ...], float]]], ...] = (
            ("counter", self.counters), ("gauge", self.gauges))
        for kind, store in scalars:
            for name, series in sorted(store.items()):
                out.append(f"# HELP {name} {_HELP.get(name, name)}")
                out.append(f"# TYPE {name} {kind}")
                for labels, v in sorted(series.items()):
                    out.append(f"{name}{fmt(labels)} {v:g}")
        for name, hist in sorted(self.hists.items()):
            out.append(f"# HELP {name} {_HELP.get(name, name)}")
            out.append(f"# TYPE {name} histogram")
            for labels, state in sorted(hist.items()):
                for i, bound in enumerate(_BUCKETS):
                    le = 'le="' + str(bound) + '"'
                    out.append(f"{name}_bucket{fmt(labels, le)} {state[i]:g}")
                inf = 'le="+Inf"'
                out.append(f"{name}_bucket{fmt(labels, inf)} {state[-2]:g}")
                out.append(f"{name}_count{fmt(labels)} {state[-2]:g}")
                out.append(f"{name}_sum{fmt(labels)} {state[-1]:g}")
        return "\n".join(out) + "\n"
