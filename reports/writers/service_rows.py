"""The endings table (how the accepted orders ended, overall and per window), formatted once for both
summary.md and report.html."""

from __future__ import annotations

from reports.service import ENDINGS, Service
from reports.story import pct


def service_rows(service: Service) -> list[dict[str, str]]:
    """The whole run, then each window (traffic phase or fault): counts per ending and the served share."""
    out = []
    for label, counts in [("the whole run", service.counts), *((w.label, c) for w, c in service.by_window)]:
        share = Service.share(counts)
        row = {k: f"{counts.get(k, 0):,}" for k in ENDINGS}
        row.update(
            label=label, accepted=f"{sum(counts.values()):,}", served="—" if share is None else pct(share)
        )
        out.append(row)
    return out
