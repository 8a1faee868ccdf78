"""Results of one bench/run: medians, ratios, target checks, the Markdown report and the PNG plots."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench import stores_report
from chunkd.protocols.graph_print import NEXT_EXPECTED_RANGES

NGINX, TUS_NODE, NULL = "nginx", "@tus/server", "null sink (driver ceiling)"


@dataclass
class Series:
    """Samples of one measurement for several servers, taken alternately in one run."""

    section: str
    case: str
    unit: str
    higher_better: bool = True
    values: dict[str, list[float]] = field(default_factory=dict)
    note: str = ""

    def add(self, server: str, value: float) -> None:
        self.values.setdefault(server, []).append(value)

    def median(self, server: str) -> float | None:
        v = self.values.get(server)
        return statistics.median(v) if v else None


@dataclass
class Target:
    name: str
    measured: float | None  # the ratio or figure checked
    limit: float
    op: str  # ">=" or "<="
    detail: str

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "SKIP"
        ok = self.measured >= self.limit if self.op == ">=" else self.measured <= self.limit
        return "PASS" if ok else "MISS"


@dataclass
class Results:
    mode: str
    started: str
    machine: str
    series: list[Series] = field(default_factory=list)
    scaling: dict[str, Any] = field(default_factory=dict)  # in-process curves
    notes: list[str] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    seconds: float = 0.0

    def new(self, section: str, case: str, unit: str, higher_better: bool = True, note: str = "") -> Series:
        s = Series(section, case, unit, higher_better, note=note)
        self.series.append(s)
        return s

    def find(self, section: str, case: str) -> Series | None:
        return next((s for s in self.series if s.section == section and s.case == case), None)

    def skip(self, what: str, why: str) -> None:
        self.notes.append(f"skipped {what}: {why}")
        print(f"  skipped {what}: {why}", flush=True)


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v >= 100:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    if v >= 0.1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}x"


def main_table(r: Results) -> str:
    lines = ["| measurement | server | median | unit | runs | ÷ nginx | ÷ @tus/server |",
             "|---|---|---:|---|---:|---:|---:|"]
    for s in r.series:
        if s.section.startswith(stores_report.OWN):
            continue  # their own tables (stores_report.tables)
        ref_n, ref_t = s.median(NGINX), s.median(TUS_NODE)
        for server, vals in s.values.items():
            m = statistics.median(vals)
            rn = _ratio(m, ref_n) if server != NGINX else ""
            rt = _ratio(m, ref_t) if server not in (TUS_NODE, NGINX, NULL) else ""
            lines.append(f"| {s.section}: {s.case} | {server} | {_fmt(m)} | {s.unit} | {len(vals)} | {rn} | {rt} |")
    return "\n".join(lines)


def wide_table(r: Results) -> str:
    """One row per measurement, one column per server (medians); the compact form for the README."""
    series = [s for s in r.series if not s.section.startswith(stores_report.OWN)]  # tabled there
    servers: list[str] = []
    for s in series:
        servers += [k for k in s.values if k not in servers]
    short = {NULL: "null sink"}
    lines = ["| measurement | unit | " + " | ".join(short.get(k, k) for k in servers) + " |",
             "|---|---|" + "---:|" * len(servers)]
    for s in series:
        cells = [_fmt(s.median(k)) if k in s.values else "" for k in servers]
        lines.append(f"| {s.section}: {s.case} | {s.unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def scaling_tables(r: Results) -> str:
    out: list[str] = []
    c = r.scaling.get("commit")
    if c:
        out += ["| file size | commit (ms) |", "|---:|---:|"]
        out += [f"| {int(size) >> 20} MiB | {t * 1e3:.2f} |" for size, t in c["commit"].items()]
        out.append(f"| cp of {int(c['cp_size']) >> 20} MiB (+fsync) | {c['cp'] * 1e3:,.0f} "
                   f"({c['cp_fsync'] * 1e3:,.0f}) |")
        out.append("")
    m = r.scaling.get("missing")
    if m:
        full = r.scaling.get("missing_all") or {}
        out += [f"| disjoint received ranges | first {NEXT_EXPECTED_RANGES} gaps (ms) | every gap (ms) |",
                "|---:|---:|---:|"]
        out += [f"| {int(n):,} | {t * 1e3:.3f} | {_ms(full.get(n))} |" for n, t in m.items()]
        if r.scaling.get("chunk_inproc"):
            out.append(f"| (one durable 64 KiB write_range, in-process, for scale) | "
                       f"{r.scaling['chunk_inproc'] * 1e3:.3f} | |")
        out.append("")
    meta = r.scaling.get("metadata")
    if meta:
        counts = list(meta)
        ops = list(next(iter(meta.values())))
        out += ["| operation (ms) | " + " | ".join(f"{int(n):,} sessions" for n in counts) + " |",
                "|---|" + "---:|" * len(counts)]
        out += [f"| {op} | " + " | ".join(f"{meta[n][op] * 1e3:.2f}" for n in counts) + " |" for op in ops]
        out.append("")
    return "\n".join(out)


def targets_table(r: Results) -> str:
    lines = ["| target | measured | limit | verdict | from |", "|---|---:|---:|---|---|"]
    for t in r.targets:
        m = "-" if t.measured is None else f"{t.measured:.3g}"
        lines.append(f"| {t.name} | {m} | {t.op} {t.limit:g} | **{t.verdict}** | {t.detail} |")
    return "\n".join(lines)


def markdown(r: Results, rerun: str) -> str:
    parts = [f"# chunkd benchmark ({r.mode})", "",
             f"{r.started}; {r.machine}; run took {r.seconds / 60:.1f} min. Rerun: `{rerun}`", "",
             "## Targets", "", targets_table(r), "", "## Summary (medians)", "", wide_table(r), "",
             "## Side by side with ratios (medians of alternating runs)", "",
             main_table(r), "", "## Scaling (chunkd engine in-process)", "", scaling_tables(r), stores_report.tables(r)]
    if r.notes:
        parts += ["## Notes", ""] + [f"- {n}" for n in r.notes]
    return "\n".join(parts) + "\n"


def save(r: Results, out: Path, rerun: str) -> str:
    out.mkdir(parents=True, exist_ok=True)
    md = markdown(r, rerun)
    (out / "results.md").write_text(md)
    (out / "results.json").write_text(json.dumps(asdict(r), indent=1, default=str))
    try:
        plot(r, out / "overview.png")
    except ImportError:
        r.notes.append("matplotlib is not installed: no plots (pip install '.[bench]')")
    return md


def plot(r: Results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 9.5))
    fig.suptitle(f"chunkd benchmark — {r.started} — {r.machine}", fontsize=11)

    palette = plt.get_cmap("tab10").colors
    colors: dict[str, Any] = {}

    def color(server: str) -> Any:
        return colors.setdefault(server, palette[len(colors) % len(palette)])

    def bars(ax: Any, sections: tuple[str, ...], title: str, unit: str) -> None:
        """Grouped bars; the null sink (driver ceiling) would dwarf the servers, so it goes in the title."""
        series = [s for s in r.series if s.section.startswith(sections)]
        servers: list[str] = []
        for s in series:
            servers += [k for k in s.values if k not in servers and k != NULL]
        ceilings = [m for s in series if (m := s.median(NULL))]
        if ceilings:
            title += f"\n(driver against the null sink: {min(ceilings):,.0f}+ {unit})"
        width = 0.8 / max(1, len(servers))
        for i, server in enumerate(servers):
            xs = [j + i * width for j, s in enumerate(series) if server in s.values]
            ys = [s.median(server) or 0 for s in series if server in s.values]
            ax.bar(xs, ys, width, label=server, color=color(server))
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(series))])
        ax.set_xticklabels([f"{s.section[:2]} {s.case}" for s in series], fontsize=7, rotation=15)
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        if servers:
            ax.legend(fontsize=6)

    bars(axes[0][0], ("1.", "2."), "One upload, and parallel streams into one: throughput", "MB/s")
    bars(axes[0][1], ("3.",), "64 KiB requests per second", "requests/s")

    ax = axes[0][2]
    conc = [s for s in r.series if s.section.startswith("5a")]
    servers = []
    for s in conc:
        servers += [k for k in s.values if k not in servers]
    for server in servers:
        pts = [(int(s.case.split()[0]), s.median(server)) for s in conc if server in s.values]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=server, color=color(server))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("concurrent sessions")
    ax.set_ylabel("aggregate MB/s")
    ax.set_title("Concurrency scaling", fontsize=10)
    if servers:
        ax.legend(fontsize=6)

    ax = axes[1][0]
    c = r.scaling.get("commit")
    if c:
        sizes = [int(k) / (1 << 20) for k in c["commit"]]
        ax.plot(sizes, [t * 1e3 for t in c["commit"].values()], marker="o", label="chunkd commit")
        ax.axhline(c["cp_fsync"] * 1e3, color="grey", ls="--", label=f"cp+fsync {int(c['cp_size']) >> 20} MiB")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    ax.set_xlabel("file size (MiB)")
    ax.set_ylabel("ms")
    ax.set_title("Commit time vs file size", fontsize=10)

    ax = axes[1][1]
    m = r.scaling.get("missing")
    if m:
        ax.plot([int(k) for k in m], [t * 1e3 for t in m.values()], marker="o",
                label=f"first {NEXT_EXPECTED_RANGES} gaps")
        full = r.scaling.get("missing_all")
        if full:
            ax.plot([int(k) for k in full], [t * 1e3 for t in full.values()], marker="o", label="every gap")
        ax.legend(fontsize=6)
        ax.set_xscale("log")
        ax.set_yscale("log")
    ax.set_xlabel("disjoint received ranges")
    ax.set_ylabel("ms")
    ax.set_title("Missing-range query", fontsize=10)

    ax = axes[1][2]
    meta = r.scaling.get("metadata")
    if meta:
        counts = [int(n) for n in meta]
        for op in next(iter(meta.values())):
            ax.plot(counts, [meta[n][op] * 1e3 for n in meta], marker="o", label=op)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.legend(fontsize=6)
    ax.set_xlabel("sessions in the store")
    ax.set_ylabel("ms per operation")
    ax.set_title("Metadata operations vs store size", fontsize=10)

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _ms(t: float | None) -> str:
    return "" if t is None else f"{t * 1e3:.3f}"
