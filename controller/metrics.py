"""Prometheus text exposition (format 0.0.4) of the loop's `Stats`, for `GET /metrics`.

Pure: numbers in, text out. Written by hand rather than with prometheus_client: a dozen
series, no registry or global state to reset between tests; the tests parse the output
with prometheus_client's own parser, so the format is checked by the reference.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items())) + "}"


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Exposition:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str,
               samples: Iterable[tuple[str, Mapping[str, str], float]]) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        for suffix, labels, value in samples:
            self.lines.append(f"{name}{suffix}{_labels(labels)} {_num(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def render(stats: Any, *, quarantined: int, suspended: bool, flapping: Iterable[str], failures: int,
           up_since: float) -> str:
    """`stats`: a `controller.loop.Stats`."""
    out = Exposition()
    out.family("llm_gitops_passes_total", "counter", "Reconcile passes, by outcome.",
               [("", {"outcome": k}, v) for k, v in sorted(stats.passes.items())])
    cumulative, buckets = 0, []
    for bound, count in zip((*stats.duration_buckets, float("inf")), stats.duration_counts):
        cumulative += count
        buckets.append(("_bucket", {"le": _num(bound)}, cumulative))
    out.family("llm_gitops_pass_duration_seconds", "histogram", "Duration of reconcile passes.",
               [*buckets, ("_sum", {}, stats.duration_sum), ("_count", {}, cumulative)])
    if stats.last_applied_at is not None:
        out.family("llm_gitops_last_applied_timestamp_seconds", "gauge",
                   "When a pass last changed the stack (Unix time).", [("", {}, stats.last_applied_at)])
    if stats.last_pass_at is not None:
        out.family("llm_gitops_last_pass_timestamp_seconds", "gauge", "When the last pass ended (Unix time).",
                   [("", {}, stats.last_pass_at)])
    out.family("llm_gitops_drift_repairs_total", "counter",
               "Containers (or the gateway config) changed by hand and put back.", [("", {}, stats.drift_repairs)])
    out.family("llm_gitops_quarantined_commits", "gauge", "Commits that are not tried again.",
               [("", {}, quarantined)])
    out.family("llm_gitops_container_restarts_total", "counter",
               "Crash restarts by the engine's restart policy, seen since the controller started, by container.",
               [("", {"container": k}, v) for k, v in sorted(stats.restarts.items())])
    out.family("llm_gitops_flapping", "gauge", "1 for a container the flap limit stopped and leaves alone.",
               [("", {"container": k}, 1) for k in sorted(flapping)])
    out.family("llm_gitops_suspended", "gauge", "1 while `llm-gitops suspend` holds changes.",
               [("", {}, 1 if suspended else 0)])
    out.family("llm_gitops_failures_in_a_row", "gauge", "Failed passes since the last good one (backoff).",
               [("", {}, failures)])
    out.family("llm_gitops_source_errors_total", "counter", "Failures to read the git source.",
               [("", {}, stats.source_errors)])
    out.family("llm_gitops_start_time_seconds", "gauge", "When the controller started (Unix time).",
               [("", {}, up_since)])
    return out.text()
