"""Tables and the plot (stores.png) of sections 7 (object stores) and 8 (multi-node) of bench/run.

Their series have labels of their own (uploaders, node counts, ratios), so they get compact tables here
instead of columns in the summary table.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.report import Results, Series

OWN = ("7.", "8.")  # sections rendered here


def _fmt(vals: list[float]) -> str:
    m = statistics.median(vals)
    s = f"{m:,.0f}" if m >= 100 else f"{m:.1f}" if m >= 10 else f"{m:.2f}"
    if len(vals) > 1:
        lo, hi = min(vals), max(vals)
        s += f" ({lo:.3g}-{hi:.3g})"
    return s


def own(r: Results, prefix: str) -> list[Series]:
    return [s for s in r.series if s.section.startswith(prefix)]


def tables(r: Results) -> str:
    """Markdown: one table per section, one row per series, one column per label (median, min-max)."""
    out: list[str] = []
    for prefix, title in (("7.", "Object stores: chunkd against the raw client library (section 7)"),
                          ("8.", "Several nodes on one PostgreSQL database (section 8)")):
        series = own(r, prefix)
        if not series:
            continue
        out += [f"## {title}", ""]
        for s in series:
            out += [f"**{s.case}** ({s.unit}, median of {max(len(v) for v in s.values.values())} rounds, min-max)"
                    + (f" — {s.note}" if s.note else ""), ""]
            out += ["| " + " | ".join(s.values) + " |", "|" + "---:|" * len(s.values)]
            out += ["| " + " | ".join(_fmt(v) for v in s.values.values()) + " |", ""]
    return "\n".join(out)


def save(r: Results, out: Path) -> None:
    """stores.png with one panel per section measured; nothing when neither ran or matplotlib is missing."""
    if not (own(r, "7.") or own(r, "8.")):
        return
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    fig.suptitle(f"chunkd on object stores and several nodes — {r.started}", fontsize=11)
    rates = [s for s in own(r, "7.") if s.unit == "MB/s"]
    cpus = [s for s in own(r, "7.") if s.unit == "CPU-s/GiB" and "CPU of the uploader" in s.case]
    _bars(axes[0], rates, "Object store upload: MB/s", "MB/s")
    _bars(axes[1], cpus, "Object store upload: uploader CPU-s per GiB", "CPU-s/GiB")
    ax = axes[2]
    for s in own(r, "8."):
        if s.unit in ("MB/s", "requests/s"):
            xs = [int(k.split()[0]) for k in s.values]
            ax.plot(xs, [statistics.median(v) for v in s.values.values()], marker="o",
                    label=f"{s.case[:40]} ({s.unit})")
    ax.set_xticks([1, 2, 3])
    ax.set_xlabel("nodes (one PostgreSQL database, one moto bucket)")
    ax.set_title("Several nodes (on 2 cores: overhead, not scale-out)", fontsize=10)
    if own(r, "8."):
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "stores.png", dpi=90)
    plt.close(fig)


def _bars(ax: Any, series: list[Series], title: str, unit: str) -> None:
    labels: list[str] = []
    for s in series:
        labels += [k for k in s.values if k not in labels]
    width = 0.8 / max(1, len(labels))
    for i, label in enumerate(labels):
        xs = [j + i * width for j, s in enumerate(series) if label in s.values]
        ys = [statistics.median(s.values[label]) for s in series if label in s.values]
        ax.bar(xs, ys, width, label=label)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(series))])
    ax.set_xticklabels([s.case.split(":")[0] for s in series], fontsize=8)
    ax.set_ylabel(unit)
    ax.set_title(title, fontsize=10)
    if labels:
        ax.legend(fontsize=7)
