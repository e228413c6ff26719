"""Figures of the report (matplotlib, Agg backend): every function takes plain data and returns a Figure.

Line charts for width/depth scaling (gram-paper.md §3.1, §3.3), KL and ELBO curves (§2.2–2.4, App. A.3),
the PCA view of latent trajectories (§6.4, Fig. 18–19), predictive checks, and solution galleries that
draw answers as boards: N-Queens, coloured graphs (networkx), Sudoku grids, toy permutations, and a
token grid for any other task.  The one ArviZ figure, the log-weight distributions, is drawn with
``arviz_plots.plot_dist`` with ``ci_kind``/``ci_prob`` set explicitly (pyro-arviz-notes.md §2.4).
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import networkx as nx  # noqa: E402
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
def _cell_colour(given: bool, changed: bool) -> str:
    """Black for a given kept, red for a given the sample changed, blue for a cell the model filled in."""
    return "red" if changed else ("black" if given else "tab:blue")


def _draw_nqueens(ax, x, y, ok):
    n = int(round(math.sqrt(len(y))))
    board = (np.add.outer(np.arange(n), np.arange(n)) % 2).astype(float)
    ax.imshow(board, cmap="Greys", vmin=-1, vmax=4, extent=(-0.5, n - 0.5, n - 0.5, -0.5))
    for idx in np.flatnonzero(np.asarray(y) == 2):
        r, c = divmod(int(idx), n)
        given = len(x) == len(y) and x[idx] == 2
        ax.text(c, r, "♛", ha="center", va="center", fontsize=max(6, 90 // n), color="black" if given else "tab:blue")


def _draw_graph(ax, x, y, ok):
    n = len(y)
    iu, ju = np.triu_indices(n, 1)
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from((int(a), int(b)) for a, b, t in zip(iu, ju, x) if t == 2)
    palette = {3: "tab:red", 4: "tab:green", 5: "tab:blue"}
    colours = [palette.get(int(t), "lightgrey") for t in y]
    edge_colours = ["red" if y[a] == y[b] or int(y[a]) not in palette else "black" for a, b in g.edges]
    pos = nx.circular_layout(g)
    nx.draw_networkx(g, pos, ax=ax, node_color=colours, edge_color=edge_colours, node_size=160, font_size=7,
                     width=[2.5 if c == "red" else 1.0 for c in edge_colours])


def _draw_sudoku(ax, x, y, ok):
    n = int(round(math.sqrt(len(y))))
    box = int(round(math.sqrt(n)))
    ax.imshow(np.zeros((n, n)), cmap="Greys", vmin=0, vmax=1, extent=(-0.5, n - 0.5, n - 0.5, -0.5))
    for k in range(n + 1):
        lw = 2 if k % box == 0 else 0.5
        ax.axhline(k - 0.5, color="black", linewidth=lw)
        ax.axvline(k - 0.5, color="black", linewidth=lw)
    for idx, t in enumerate(np.asarray(y)):
        r, c = divmod(idx, n)
        given = len(x) == len(y) and x[idx] >= 2
        text = str(int(t) - 1) if 2 <= t <= n + 1 else "?"
        ax.text(c, r, text, ha="center", va="center", fontsize=max(6, 80 // n),
                color=_cell_colour(given, given and t != x[idx]), fontweight="bold" if given else "normal")


def _draw_row(ax, x, y, ok):
    n = len(y)
    ax.imshow(np.zeros((1, n)), cmap="Greys", vmin=0, vmax=1, extent=(-0.5, n - 0.5, 0.5, -0.5))
    for k in range(n + 1):
        ax.plot([k - 0.5, k - 0.5], [-0.5, 0.5], color="black", linewidth=1)
    ax.plot([-0.5, n - 0.5, n - 0.5, -0.5, -0.5], [-0.5, -0.5, 0.5, 0.5, -0.5], color="black", linewidth=1)
    ax.set_xlim(-0.6, n - 0.4), ax.set_ylim(0.6, -0.6)
    for i, t in enumerate(np.asarray(y)):
        given = len(x) == len(y) and x[i] >= 2
        ax.text(i, 0, str(int(t) - 1) if t >= 2 else "·", ha="center", va="center", fontsize=14,
                color=_cell_colour(given, given and t != x[i]), fontweight="bold" if given else "normal")


def _draw_tokens(ax, x, y, ok):
    y = np.asarray(y)
    side = int(round(math.sqrt(len(y))))
    grid = y.reshape(side, side) if side * side == len(y) else y.reshape(1, -1)
    ax.imshow(grid, cmap="magma", interpolation="nearest")
    if grid.size <= 100:
        for (r, c), t in np.ndenumerate(grid):
            ax.text(c, r, str(int(t)), ha="center", va="center", fontsize=7, color="cyan")


def drawer(task_name: str):
    """The board drawer for a task, dispatched on the name prefix (token grid for unknown tasks)."""
    for prefix, fn in (("nqueens-", _draw_nqueens), ("graph-coloring-", _draw_graph), ("sudoku", _draw_sudoku),
                       ("toy-perm", _draw_row)):
        if task_name.startswith(prefix):
            return fn
    return _draw_tokens


def gallery(task_name: str, label: str, items: list[dict]) -> Figure:
    """Rows of inputs, each: the target then the most frequent distinct samples.

    ``items``: ``{"input": int, "x", "target", "samples": [{"y", "count", "valid"}]}``.
    """
    draw = drawer(task_name)
    cols = 1 + max((len(it["samples"]) for it in items), default=0)
    row_h = 0.9 if task_name.startswith("toy-perm") else 2.2
    fig = Figure(figsize=(2.3 * cols, row_h * len(items) + 0.8), layout="constrained")
    fig.suptitle(label, fontsize=11)
    axes = fig.subplots(len(items), cols, squeeze=False)
    for row, it in zip(axes, items):
        panels = [("data target", it["target"], True)] + [
            (f"×{s['count']} {'valid' if s['valid'] else 'INVALID'}", s["y"], s["valid"]) for s in it["samples"]
        ]
        for ax, (title, y, ok) in zip(row, panels):
            draw(ax, it["x"], y, ok)
            ax.set_title(f"input {it['input']}: {title}" if title == "data target" else title, fontsize=8,
                         color="black" if ok else "red")
        for ax in row:
            ax.set_xticks([]), ax.set_yticks([])
            for side in ax.spines.values():
                side.set_visible(False)
    return fig
