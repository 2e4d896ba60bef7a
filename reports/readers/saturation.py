"""The saturation finding's inputs (:mod:`reports.saturation`): the resource samples and the offered load.

- ``resources.jsonl`` (``rundir.RESOURCES``, written by ``rig.resources``): one sample a second of the
  machine and of each role; :func:`read_resources` parses it, cut or foreign lines skipped and counted;
- the ledgers' ``order_sent`` first attempts (simulator and Locust): :func:`read_offered` finds only those
  lines, by their bytes, without parsing the rest of the ledger.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from reports import _json

_ORDER_SENT: Final = b'"order_sent"'


@dataclass(frozen=True)
class RoleUsage:
    """One role in one sample: CPU in percent of one core (summed and busiest process), RSS, processes."""

    cpu: float
    max: float
    rss_mb: float
    procs: int


@dataclass(frozen=True)
class ResourceSample:
    """One line of resources.jsonl (``t`` = end of the interval, ``dt`` = its length)."""

    t: float
    dt: float
    cores: int
    cpu_busy: float
    iowait: float = 0.0
    steal: float = 0.0
    load1: float | None = None
    mem_total_mb: float | None = None
    mem_available_mb: float | None = None
    roles: Mapping[str, RoleUsage] = field(default_factory=dict)

    @property
    def mid(self) -> float:
        """The middle of the interval measured."""
        return self.t - self.dt / 2

    @property
    def mem_available(self) -> float | None:
        """Available memory as a fraction of the total."""
        if not self.mem_total_mb or self.mem_available_mb is None:
            return None
        return self.mem_available_mb / self.mem_total_mb

    @classmethod
    def from_dict(cls, rec: Mapping[str, Any]) -> ResourceSample:
        """Parse one record; ``KeyError`` / ``TypeError`` / ``ValueError`` when it is not a sample."""

        def opt(key: str) -> float | None:
            v = rec.get(key)
            return None if v is None else float(v)

        roles = {
            str(name): RoleUsage(
                float(r["cpu"]),
                float(r.get("max", r["cpu"])),
                float(r.get("rss_mb", 0.0)),
                int(r.get("procs", 1)),
            )
            for name, r in (rec.get("roles") or {}).items()
        }
        return cls(
            t=float(rec["t"]),
            dt=float(rec.get("dt", 1.0)),
            cores=int(rec["cores"]),
            cpu_busy=float(rec["cpu_busy"]),
            iowait=float(rec.get("iowait", 0.0)),
            steal=float(rec.get("steal", 0.0)),
            load1=opt("load1"),
            mem_total_mb=opt("mem_total_mb"),
            mem_available_mb=opt("mem_available_mb"),
            roles=roles,
        )


@dataclass
class ResourceStats:
    """What was read from resources.jsonl."""

    path: str
    present: bool = False
    samples: int = 0
    malformed: int = 0


def read_resources(path: Path) -> tuple[list[ResourceSample], ResourceStats]:
    """Every sample of ``path`` in time order (cut or foreign lines skipped and counted)."""
    stats = ResourceStats(str(path))
    samples: list[ResourceSample] = []
    if not path.is_file():
        return samples, stats
    stats.present = True
    for rec in _json.json_lines(path):
        try:
            samples.append(ResourceSample.from_dict(rec))
        except (ValueError, KeyError, TypeError, AttributeError):
            stats.malformed += 1
    samples.sort(key=lambda s: s.t)
    stats.samples = len(samples)
    return samples, stats


@dataclass
class Offered:
    """First attempts of orders sent: send times, the nominal offered rate then and how late they left
    (``None`` where the ledger does not say: Locust's)."""

    times: list[float] = field(default_factory=list)
    nominal: list[float | None] = field(default_factory=list)
    lags: list[float | None] = field(default_factory=list)


def read_offered(paths: Iterable[Path]) -> Offered:
    """``order_sent`` first attempts of the ledgers that exist. Only those lines are parsed: the file is
    searched for the kind's bytes (a second pass over the ledger costs ~1.5 s per GB)."""
    out = Offered()
    rows: list[tuple[float, float | None, float | None]] = []
    for path in paths:
        if not path.is_file() or path.stat().st_size == 0:
            continue
        with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            pos = mm.find(_ORDER_SENT)
            while pos != -1:
                start = mm.rfind(b"\n", 0, pos) + 1
                end = mm.find(b"\n", pos)
                end = len(mm) if end == -1 else end
                pos = mm.find(_ORDER_SENT, end)
                try:
                    rec = _json.loads(mm[start:end])
                    if rec.get("kind") != "order_sent" or int(rec.get("attempt") or 1) != 1:
                        continue
                    rate, lag = rec.get("offered_rate"), rec.get("lag_s")
                    rows.append(
                        (
                            float(rec["t"]),
                            None if rate is None else float(rate),
                            None if lag is None else float(lag),
                        )
                    )
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # the loss audit counts malformed ledger lines; here they are just not load
    rows.sort(key=lambda r: r[0])
    out.times = [t for t, _, _ in rows]
    out.nominal = [r for _, r, _ in rows]
    out.lags = [lag for _, _, lag in rows]
    return out
