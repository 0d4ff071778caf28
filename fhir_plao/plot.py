"""A picture of a case's bone density over time: T- and Z-scores per site, one panel each.

::

    from fhir_plao.plot import plot_scores
    plotted = plot_scores(case, "bmd.svg")      # or .png; returns how many scores were drawn

Each DXA site is a line through its scores in date order, each score a marked point with its
value beside it. The T-score panel shades the WHO bands: at or above -1.0 normal, between -1.0
and -2.5 low bone mass (osteopenia), at or below -2.5 osteoporosis; the Z-score panel marks the
same -1.0 and -2.5 lines, and -2.0, below which ISCD calls a Z-score "below the expected range
for age" (the measure for premenopausal women such as a PLAO patient). Scores of kind BMD
(g/cm2) are not drawn. The output is deterministic (same case, same file).

Plotting needs matplotlib, an optional extra: ``pip install 'fhir-plao[plot]'``; without it
:class:`~fhir_plao.errors.ExtraMissing` says so.
"""

from __future__ import annotations

import io
from collections import defaultdict
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from fhir_plao.errors import ExtraMissing, InputError

if TYPE_CHECKING:
    from fhir_plao.case import Case

__all__ = ["FORMATS", "plot_scores", "plotted_points"]

FORMATS = ("svg", "png")
INSTALL_HINT = "plotting needs matplotlib: pip install 'fhir-plao[plot]'"

# WHO T-score categories; ISCD's Z-score threshold for premenopausal women
T_NORMAL = -1.0
T_OSTEOPOROSIS = -2.5
Z_BELOW_EXPECTED = -2.0

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf")


def plotted_points(case: Case) -> dict[str, dict[str, list[tuple[date, Decimal]]]]:
    """The scores to draw: kind ("T", "Z") -> site -> [(date, score)] in date order."""
    out: dict[str, dict[str, list[tuple[date, Decimal]]]] = {
        "T": defaultdict(list),
        "Z": defaultdict(list),
    }
    for scan in case.dxa_scans:
        when = _day(str(scan.date))
        for score in scan.scores:
            if score.kind not in out:
                continue
            site = _site_label(score.site)
            out[score.kind][site].append((when, Decimal(score.value)))
    for kind in out:
        for points in out[kind].values():
            points.sort()
    return {kind: dict(sites) for kind, sites in out.items()}


def plot_scores(
    case: Case,
    output: str | Path | BinaryIO,
    *,
    image_format: Literal["svg", "png"] | None = None,
    title: str | None = None,
) -> int:
    """Draw the case's T- and Z-scores into ``output`` (a path, or a binary stream with
    ``image_format``); returns the number of scores drawn. Raises
    :class:`~fhir_plao.errors.InputError` when the case has no T- or Z-score."""
    fmt = image_format or _format_of(output)
    points = plotted_points(case)
    total = sum(len(p) for sites in points.values() for p in sites.values())
    if total == 0:
        raise InputError("the case has no DXA T- or Z-score to plot", location="dxa_scans")
    plt = _pyplot()
    figure, axes = plt.subplots(2, 1, figsize=(8.0, 7.5), sharex=True)
    try:
        for ax, kind in zip(axes, ("T", "Z"), strict=True):
            _panel(ax, kind, points[kind])
        days = sorted({d for sites in points.values() for p in sites.values() for d, _ in p})
        axes[-1].set_xticks(days, [d.isoformat() for d in days])
        axes[-1].set_xlabel("date of the DXA scan")
        figure.suptitle(title or "Bone density by DXA: T- and Z-scores per site")
        figure.autofmt_xdate()
        figure.tight_layout()
        buffer = io.BytesIO()
        metadata: dict[str, Any] = {"Date": None} if fmt == "svg" else {"Software": None}
        figure.savefig(buffer, format=fmt, metadata=metadata, dpi=120)
    finally:
        plt.close(figure)
    data = buffer.getvalue()
    if isinstance(output, str | Path):
        from fhir_plao._files import atomic_output_bytes

        with atomic_output_bytes(output) as handle:
            handle.write(data)
    else:
        output.write(data)
    return total


def _panel(ax: Any, kind: str, sites: dict[str, list[tuple[date, Decimal]]]) -> None:
    values = [float(v) for points in sites.values() for _, v in points]
    low = min([*values, T_OSTEOPOROSIS]) - 0.7
    high = max([*values, 0.0]) + 0.7
    if kind == "T":
        ax.axhspan(T_NORMAL, high, color="#e8f5e9", zorder=0, label="normal (T ≥ -1.0)")
        ax.axhspan(T_OSTEOPOROSIS, T_NORMAL, color="#fff8e1", zorder=0, label="osteopenia")
        ax.axhspan(low, T_OSTEOPOROSIS, color="#ffebee", zorder=0, label="osteoporosis (T ≤ -2.5)")
    for line, name in ((T_NORMAL, "-1.0"), (T_OSTEOPOROSIS, "-2.5")):
        ax.axhline(line, color="#424242", linewidth=1.0, linestyle="--", zorder=2)
        ax.annotate(
            name,
            (1.0, line),
            xycoords=("axes fraction", "data"),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
            color="#616161",
        )
    if kind == "Z":
        ax.axhline(
            Z_BELOW_EXPECTED,
            color="#b71c1c",
            linewidth=1.2,
            linestyle=":",
            zorder=2,
            label="Z ≤ -2.0: below the expected range for age (ISCD)",
        )
    for n, (site, points) in enumerate(sorted(sites.items())):
        colour = _COLOURS[n % len(_COLOURS)]
        xs = [d for d, _ in points]
        ys = [float(v) for _, v in points]
        (drawn,) = ax.plot(xs, ys, marker="o", color=colour, linewidth=1.6, label=site, zorder=3)
        drawn.set_gid(f"scores-{kind}-{n}")
        for x, (_, value) in zip(xs, points, strict=True):
            ax.annotate(
                str(value),
                (x, float(value)),
                xytext=(5, 6),
                textcoords="offset points",
                fontsize=8,
                color=colour,
            )
    ax.set_ylim(low, high)
    ax.set_ylabel(f"{kind}-score (SD)")
    ax.set_title(f"{kind}-scores", fontsize=10, loc="left")
    ax.grid(axis="y", color="#eeeeee", zorder=0)
    ax.legend(fontsize=7, loc="best", framealpha=0.9)


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise ExtraMissing(INSTALL_HINT) from None
    matplotlib.use("Agg", force=True)
    matplotlib.rcParams["svg.hashsalt"] = "fhir-plao"  # the same ids in every run
    import matplotlib.pyplot as plt

    return plt


def _format_of(output: str | Path | BinaryIO) -> Literal["svg", "png"]:
    if not isinstance(output, str | Path):
        raise InputError("image_format is needed when writing to a stream", location="image_format")
    suffix = Path(output).suffix.lower().lstrip(".")
    if suffix == "png":
        return "png"
    if suffix == "svg":
        return "svg"
    raise InputError(
        f"the picture's name must end in .svg or .png, not {Path(output).name!r}",
        location=str(output),
    )


def _day(text: str) -> date:
    """The date of a scan (a year or year-month counts as its first day)."""
    parts = text[:10].split("-")
    year = int(parts[0])
    month = int(parts[1]) if len(parts) > 1 else 1
    day = int(parts[2]) if len(parts) > 2 else 1
    return date(year, month, day)


def _site_label(key: str) -> str:
    """The site as the code table writes it (``Lumbar spine L1-L4``), else its key."""
    from fhir_plao.terminology import TERMINOLOGY

    return TERMINOLOGY.concept(key).text if key in TERMINOLOGY else key
