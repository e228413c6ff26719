"""Figures of the report (matplotlib, Agg backend): every function takes plain data and returns a Figure.

Line charts for width/depth scaling (gram-paper.md §3.1, §3.3), KL and ELBO curves (§2.2–2.4, App. A.3),
the PCA view of latent trajectories (§6.4, Fig. 18–19), predictive checks, and solution galleries whose
answers each task draws itself (``Task.draw``: boards, coloured graphs, ARC's coloured grids; a token
grid by default), so this module knows no task.  The one ArviZ figure, the log-weight distributions, is drawn with
``arviz_plots.plot_dist`` with ``ci_kind``/``ci_prob`` set explicitly (pyro-arviz-notes.md §2.4).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

import arviz_plots as azp  # noqa: E402

CI_KIND, CI_PROB = "eti", 0.89  # set explicitly so numbers do not drift with rcParams (notes §2.4)
_COLOURS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def colour(i: int) -> str:
    """The i-th colour of the default cycle (one colour per run across a figure's series)."""
    return _COLOURS[i % len(_COLOURS)]


def _style(kind: str) -> dict:
    """Deterministic baselines dashed with squares, GRAM runs solid with circles, training-batch curves faint."""
    if kind == "train":
        return {"linestyle": ":", "marker": None, "alpha": 0.6}
    return {"linestyle": "--", "marker": "s"} if kind == "deterministic" else {"linestyle": "-", "marker": "o"}


def _axes(n: int, width: float = 5.2, height: float = 3.6, title: str = "") -> tuple[Figure, list]:
    fig = Figure(figsize=(max(width * n, 7.0), height), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0].tolist()
    if title:
        fig.suptitle(title, fontsize=12)
    return fig, axes


def _smooth(y: np.ndarray, points: int = 60) -> np.ndarray:
    """Moving average over about len(y) / ``points`` values (NaN-aware), for noisy per-update curves."""
    k = max(1, len(y) // points)
    ok = np.isfinite(y)
    num = np.convolve(np.where(ok, y, 0.0), np.ones(k), mode="same")
    den = np.convolve(ok.astype(float), np.ones(k), mode="same")
    return np.where(den > 0, num / np.maximum(den, 1), np.nan)


def _legend(ax, n_series: int, long_labels: bool) -> None:
    """A legend inside the axes for a few series, below them for many (so it never hides the data)."""
    if n_series > 2:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1 if long_labels else 2,
                  frameon=False)
    else:
        ax.legend(fontsize=8)


def line_panels(panels: list[dict], title: str = "") -> Figure:
    """One axes per panel: ``{"title", "xlabel", "ylabel", "series": [{"label", "x", "y", "kind"}],
    "vline": x or None, "logx": bool}``.  Series of kind ``"train"`` are smoothed (moving average).
    Panels without any finite value say "not logged"."""
    n_max = max(len(p["series"]) for p in panels)
    long_labels = max((len(s["label"]) for p in panels for s in p["series"]), default=0) > 40
    rows = 0 if n_max <= 2 else (n_max if long_labels else (n_max + 1) // 2)
    fig, axes = _axes(len(panels), height=3.6 + 0.2 * rows, title=title)
    for ax, p in zip(axes, panels):
        drawn = 0
        for i, s in enumerate(p["series"]):
            y = np.asarray(s["y"], dtype=float)
            if not np.isfinite(y).any():
                continue
            kind = s.get("kind", "gram")
            ax.plot(s["x"], _smooth(y) if kind == "train" else y, label=s["label"] + (" (smoothed)" if kind == "train" else ""),
                    color=s.get("color", _COLOURS[i % len(_COLOURS)]), markersize=4, **_style(kind))
            drawn += 1
        xs = [v for s in p["series"] for v in s["x"]]
        if xs and all(float(v).is_integer() for v in xs) and not p.get("logx"):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if p.get("vline") is not None:
            ax.axvline(p["vline"], color="grey", linestyle=":", linewidth=1, label=p.get("vline_label"))
        if p.get("logx"):
            ax.set_xscale("log")
            ticks = sorted({v for s in p["series"] for v in s["x"]})
            ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
            ax.minorticks_off()
        ax.set(title=p["title"], xlabel=p["xlabel"], ylabel=p["ylabel"])
        ax.grid(alpha=0.3)
        if drawn:
            _legend(ax, drawn, long_labels)
        else:
            ax.text(0.5, 0.5, "not logged for these runs", ha="center", va="center", transform=ax.transAxes, color="grey")
    return fig


def trajectory_pca(panels: list[dict], max_lines: int = 50) -> Figure:
    """Fig. 18–19 view: per run, h after every supervision step on its first two principal components,
    one line per trajectory (start ○, end ×); ``panels``: ``{"label", "pc" [draw, step, k], "explained" [k]}``."""
    fig, axes = _axes(len(panels), width=4.6, height=4.2, title="Latent trajectories of one input (PCA of h)")
    for ax, p in zip(axes, panels):
        pc = np.asarray(p["pc"])[:max_lines]
        steps = pc.shape[1]
        cmap = matplotlib.colormaps["viridis"]
        for line in pc:
            ax.plot(line[:, 0], line[:, 1], color="grey", alpha=0.35, linewidth=0.8)
            ax.scatter(line[:, 0], line[:, 1], c=[cmap(s / max(1, steps - 1)) for s in range(steps)], s=10, zorder=3)
        ax.scatter(pc[:, 0, 0], pc[:, 0, 1], marker="o", facecolors="none", edgecolors="black", s=40, label="step 1")
        ax.scatter(pc[:, -1, 0], pc[:, -1, 1], marker="x", color="red", s=40, label=f"step {steps}")
        ev = p["explained"]
        ax.set(title=p["label"], xlabel=f"PC 1 ({100 * ev[0]:.0f}% of variance)",
               ylabel=f"PC 2 ({100 * ev[1]:.0f}% of variance)" if len(ev) > 1 else "PC 2")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    return fig


def grouped_bars(title: str, ylabel: str, categories: list[str], groups: dict[str, list[float]],
                 errors: dict[str, list[float]] | None = None, reference: list[float] | None = None,
                 reference_label: str = "data") -> Figure:
    """Bars per category (x) and group (colour), optional error bars and a black reference tick per category."""
    fig, (ax,) = _axes(1, width=max(6.0, 0.9 * len(categories) * max(1, len(groups))), height=4.4)
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(categories))
    for i, (name, vals) in enumerate(groups.items()):
        err = None if errors is None else errors.get(name)
        ax.bar(x + (i - (len(groups) - 1) / 2) * width, vals, width, yerr=err, label=name, capsize=2,
               color=_COLOURS[i % len(_COLOURS)])
    if reference is not None:
        ax.scatter(x, reference, marker="_", s=900, color="black", zorder=4, label=reference_label)
    ax.set_xticks(x, categories, rotation=30 if len(categories) > 6 else 0, ha="right" if len(categories) > 6 else "center")
    ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, frameon=False)
    return fig


def log_weight_dist(dt, label: str, instances: list[int], khat: np.ndarray):
    """Distribution of log p − log q over guide draws for a few inputs (arviz-plots ``plot_dist``)."""
    pc = azp.plot_dist(dt, group="sample_stats", var_names=["log_weight"], coords={"instance": instances},
                       sample_dims=["chain", "draw"], kind="hist", ci_kind=CI_KIND, ci_prob=CI_PROB,
                       backend="matplotlib")
    fig = pc.viz["figure"].item()
    for i, ax in zip(instances, pc.viz["plot"]["log_weight"].values.ravel()):
        ax.set_title(f"input {i}: k̂ = {khat[i]:.2f}", fontsize=10)
        ax.set_xlabel("log p(y, τ | x) − log q(τ | x, y)")
    fig.suptitle(f"{label}: importance log weights of guide trajectories ({int(CI_PROB * 100)}% interval)")
    fig.set_size_inches(4.0 * len(instances), 3.4)
    fig.subplots_adjust(top=0.72, bottom=0.22, wspace=0.3)
    plt.close(fig)  # drop pyplot's reference (arviz-plots made it with pyplot); the figure still saves
    return fig


# ------------------------------------------------------------------ solution galleries
def gallery(task, label: str, items: list[dict]) -> Figure:
    """Rows of inputs, each: the input (where the task draws it apart, ``Task.draws_input``), the target, then
    the most frequent distinct samples, every answer drawn by the task (``Task.draw``).

    ``items``: ``{"input": int, "x", "target", "samples": [{"y", "count", "valid"}]}``.
    """
    cols = 1 + task.draws_input + max((len(it["samples"]) for it in items), default=0)
    fig = Figure(figsize=(2.3 * cols, task.draw_height * len(items) + 0.8), layout="constrained")
    fig.suptitle(label, fontsize=11)
    axes = fig.subplots(len(items), cols, squeeze=False)
    for row, it in zip(axes, items):
        panels = [("data target", it["target"], True)] + [
            (f"×{s['count']} {'valid' if s['valid'] else 'INVALID'}", s["y"], s["valid"]) for s in it["samples"]
        ]
        if task.draws_input:
            task.draw_input(row[0], it["x"])
            row[0].set_title(f"input {it['input']}", fontsize=8)
        for ax, (title, y, ok) in zip(row[int(task.draws_input):], panels):
            task.draw(ax, y, it["x"])
            first = title == "data target" and not task.draws_input
            ax.set_title(f"input {it['input']}: {title}" if first else title, fontsize=8,
                         color="black" if ok else "red")
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
    return fig
