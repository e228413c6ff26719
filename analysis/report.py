"""One self-contained HTML report over one or more runs, with every figure as PNG and every table as CSV.

:func:`build_report` draws samples from each run (:mod:`analysis.sampling`), groups runs that differ only
in their seed into one ArviZ DataTree (runs as chains, :mod:`analysis.datatree`), computes every table
from those trees, draws the figures from the tables (:mod:`analysis.plots`) and writes, atomically:
``<out>.html`` (figures embedded as base64 PNG), ``<out stem>_figures/<name>.png`` and ``<name>.csv``,
and ``<out stem>_data/<group>.nc``.  Sections follow gram-paper.md §3 (width and depth), §6.4 (latent
trajectories), §2.2–2.4 (ELBO, KL, β) and §5.6 (task metrics); docs/analysis.md explains each number.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from gram_analysis import diversity, elbo_report, plots, ppc
from gram_pyro.checkpoint import atomic_write_bytes
from gram_analysis.diversity import nanmean
from gram_analysis.datatree import build_datatree, save_datatree
from gram_analysis.run import RunData, chain_key, run_kind
from gram_analysis.sampling import draw_samples

HTML_ROWS = 60  # longer tables are cut in the HTML (the CSV has every row)


@dataclass
class Group:
    """Runs of one configuration (chains) and their DataTree."""

    name: str
    label: str
    kind: str
    task: object
    dt: xr.DataTree
    history: list[dict]  # the first run's training log
    colour: str  # the run's colour in every figure


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def analyse(runs: list[RunData], widths=(1, 5, 20), max_inputs: int = 200, traj_inputs: int = 4) -> list[Group]:
    """Sample every run and build one DataTree per configuration (runs differing only in seed = chains)."""
    by_key: dict[tuple, list[RunData]] = {}
    for run in runs:
        by_key.setdefault(chain_key(run), []).append(run)
    groups, used = [], set()
    for members in by_key.values():
        samples = [draw_samples(r, max(widths), max_inputs=max_inputs, traj_inputs=traj_inputs) for r in members]
        dt = build_datatree(samples, [r.history for r in members], widths)
        name = _slug(members[0].name if len(members) == 1 else f"{members[0].name}_x{len(members)}")
        while name in used:
            name += "_"
        used.add(name)
        label = samples[0].label + (f" ×{len(members)} seeds" if len(members) > 1 else "")
        groups.append(Group(name, label, run_kind(members[0]), members[0].task, dt, members[0].history,
                            plots.colour(len(groups))))
    return groups


# ------------------------------------------------------------------ tables (one row = one dict)
def _rows(groups: list[Group], fn, *args):
    """``fn(dt, task, *args)`` rows (a list, or a tuple of lists) of every group, prefixed with run and kind."""
    return _tagged(groups, lambda g: fn(g.dt, g.task, *args))


def _tagged(groups: list[Group], fn):
    """``fn(group)`` rows (a list, or a tuple of lists) of every group, prefixed with run and kind."""
    parts = [fn(g) for g in groups]
    tag = lambda g, rows: [{"run": g.label, "kind": g.kind, **r} for r in rows]  # noqa: E731
    if parts and isinstance(parts[0], tuple):
        return tuple([r for g, p in zip(groups, parts) for r in tag(g, p[i])] for i in range(len(parts[0])))
    return [r for g, p in zip(groups, parts) for r in tag(g, p)]


def _stat(fn, a) -> float:
    a = np.asarray(a, dtype=float)
    return float(fn(a[np.isfinite(a)])) if np.isfinite(a).any() else math.nan


def summary_rows(dt, task, widths) -> list[dict]:
    """The headline numbers of one configuration (means over inputs, draws and chains)."""
    s, d, t = dt["sample_stats"], dt["diversity"], dt["training"]
    khat, S = d["pareto_khat"].values, s.sizes["draw"]
    row = {"beta": dt.attrs["beta"], "chains": s.sizes["chain"],
           "inputs": s.sizes["instance"], "N": int(d.attrs["n_max"]), "accuracy": nanmean(s["valid"].values),
           "guide_accuracy": nanmean(s["guide_valid"].values)}
    for n in widths:
        if n in d["coverage"]["width"].values:
            row[f"coverage@{n}"] = nanmean(d["coverage"].sel(width=n).values)
    row.update({"distinct_valid@N": nanmean(d["distinct_valid"].values), "entropy@N": nanmean(d["entropy"].values),
                "hamming@N": nanmean(d["hamming"].values), "log_weight_draws": S, "elbo_full": nanmean(t["final_elbo"].values),
                "kl_total": float(np.nansum(np.nanmean(t["final_kl_per_transition"].values, axis=0))),
                "khat_median": _stat(np.median, khat),
                "khat_above_threshold": _stat(lambda k: (k > diversity.khat_threshold(S)).mean(), khat)})
    return [row]


def chain_rows(dt, task) -> list[dict]:
    """ESS/R-hat summaries of the per-draw statistics when runs are pooled as chains."""
    d = dt["diversity"]
    return [{"statistic": stat, "ess_median": _stat(np.median, d[f"ess_{stat}"].values),
             "rhat_median": _stat(np.median, d[f"rhat_{stat}"].values), "rhat_max": _stat(np.max, d[f"rhat_{stat}"].values)}
            for stat in ("valid", "log_weight") if f"rhat_{stat}" in d]


def gallery_items(g: Group, n_inputs: int = 3, n_samples: int = 5) -> list[dict]:
    """The first inputs with their target and most frequent distinct prior samples (first chain)."""
    x, tgt = g.dt["constant_data"]["x"].values, g.dt["observed_data"]["y"].values
    y, valid = g.dt["predictions"]["y"].values[0], g.dt["sample_stats"]["valid"].values[0]
    items = []
    for i in range(min(n_inputs, len(x))):
        uniq, first, counts = np.unique(y[:, i], axis=0, return_index=True, return_counts=True)
        order = sorted(range(len(uniq)), key=lambda k: (-counts[k], first[k]))[:n_samples]
        items.append({"input": i, "x": x[i], "target": tgt[i], "samples": [
            {"y": uniq[k], "count": int(counts[k]), "valid": bool(valid[first[k], i])} for k in order]})
    return items


# ------------------------------------------------------------------ HTML
def _fmt(v) -> str:
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.4g}"
    return html.escape(str(v))


def _table_html(name: str, rows: list[dict], open_: bool = False) -> str:
    if not rows:
        return f'<p id="table-{name}"><em>Table {name}: nothing to show for these runs.</em></p>'
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows[:HTML_ROWS])
    more = f"<p class='note'>First {HTML_ROWS} of {len(rows)} rows; all rows in {name}.csv.</p>" if len(rows) > HTML_ROWS else ""
    return (f'<details{" open" if open_ else ""}><summary>Table: {html.escape(name)} ({len(rows)} rows)</summary>'
            f'<div class="scroll"><table id="table-{name}"><tr>{head}</tr>{body}</table></div>{more}</details>')


def _csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    cols = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue().encode()


_CSS = """body{font-family:sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}figcaption{font-size:.95em;color:#333;margin:.3em 0}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f0f0f0;overflow-wrap:anywhere;vertical-align:bottom}td:first-child{text-align:left}
.scroll{overflow-x:auto;max-width:100%}summary{cursor:pointer;color:#225}.note{font-size:.85em;color:#555}
h2{border-bottom:1px solid #ccc}"""


class _Writer:
    """Collects figures and tables: PNG/CSV files under ``folder`` and HTML fragments for the page."""

    def __init__(self, folder: Path):
        self.folder, self.parts, self.figures, self.tables = folder, [], {}, {}

    def table(self, name: str, rows: list[dict], open_: bool = False) -> str:
        if rows:
            path = self.folder / f"{name}.csv"
            atomic_write_bytes(path, lambda f: f.write(_csv_bytes(rows)))
            self.tables[name] = str(path)
        else:
            self.tables[name] = None
        return _table_html(name, rows, open_)

    def figure(self, name: str, fig, caption: str, tables: dict[str, list[dict]]) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        png = buf.getvalue()
        path = self.folder / f"{name}.png"
        atomic_write_bytes(path, lambda f: f.write(png))
        self.figures[name] = str(path)
        img = base64.b64encode(png).decode()
        tabs = "".join(self.table(k, v) for k, v in tables.items())
        self.parts.append(f'<figure><img id="fig-{name}" alt="{html.escape(caption)}" src="data:image/png;base64,{img}">'
                          f"<figcaption>{html.escape(caption)}</figcaption>{tabs}</figure>")

    def section(self, title: str, text: str = "") -> None:
        self.parts.append(f"<h2>{html.escape(title)}</h2>" + (f"<p>{text}</p>" if text else ""))


def _series(rows, groups, x, y, suffix="", kind=None):
    """One line per group from table rows: ``x``/``y`` columns of the rows of that run."""
    return [{"label": g.label + suffix, "kind": kind or g.kind, "color": g.colour,
             "x": [r[x] for r in rows if r["run"] == g.label], "y": [r[y] for r in rows if r["run"] == g.label]}
            for g in groups]


def _scaling(w: _Writer, groups: list[Group], widths, n_sup: int) -> None:
    w.section("Width and depth scaling")
    wt = _rows(groups, diversity.width_rows, widths)
    panels = [("Coverage@N", "fraction of all solutions found", "coverage"),
              ("Distinct valid answers", "distinct valid answers per input", "distinct_valid"),
              ("Pass@N", "inputs with ≥ 1 valid answer", "pass")]
    w.figure("coverage_vs_width", plots.line_panels(
        [{"title": t, "xlabel": "samples per input N", "ylabel": yl, "series": _series(wt, groups, "width", k), "logx": True}
         for t, yl, k in panels], "Scaling with width"),
        "How much of each input's solution set N prior samples cover, how many distinct valid answers they give, "
        "and how often at least one is valid, as N grows (dashed: deterministic baseline).", {"coverage_vs_width": wt})
    dr = _rows(groups, diversity.depth_rows)
    w.figure("accuracy_vs_depth", plots.line_panels([
        {"title": "Accuracy vs depth", "xlabel": "supervision steps at test time", "ylabel": "fraction of valid answers",
         "series": _series(dr, groups, "depth", "accuracy"), "vline": n_sup, "vline_label": "training depth N_sup"}]),
        "Accuracy of prior samples after each supervision step, run past the training depth (dotted line).",
        {"accuracy_vs_depth": dr})


def _diversity(w: _Writer, groups: list[Group], n_sup: int) -> None:
    w.section("Diversity of answers and trajectories")
    ent = [{"run": g.label, "position": p, "entropy": float(v)} for g in groups
           for p, v in enumerate(np.nanmean(g.dt["diversity"]["entropy"].values, axis=(0, 1)))]
    spread = [{"run": g.label, "step": s + 1, "spread": float(v)} for g in groups
              for s, v in enumerate(np.nanmean(g.dt["diversity"]["trajectory_spread"].values, axis=(0, 1)))]
    w.figure("diversity", plots.line_panels([
        {"title": "Predictive entropy per answer position", "xlabel": "answer position", "ylabel": "entropy (nats)",
         "series": _series(ent, groups, "position", "entropy")},
        {"title": "Trajectory spread", "xlabel": "supervision step", "ylabel": "mean ‖h − mean h‖ over draws",
         "series": _series(spread, groups, "step", "spread"), "vline": n_sup}]),
        "Left: how uncertain the samples are at each answer position (0 = all samples agree); right: how far the "
        "latent states of different samples of one input lie from their mean after each supervision step.",
        {"predictive_entropy": ent, "trajectory_spread": spread})
    shown = groups[:4]
    traj = [(g, g.dt["trajectory"]["pc"].values[0, :, 0], g.dt["trajectory"]["explained_variance_ratio"].values[0, 0])
            for g in shown]
    pca = [{"run": g.label, "draw": d, "step": s + 1, **{f"pc{k + 1}": float(v) for k, v in enumerate(vec)}}
           for g, pc, _ in traj for d, line in enumerate(pc) for s, vec in enumerate(line)]
    var = [{"run": g.label, "component": k + 1, "explained_variance": float(v)} for g, _, ev in traj for k, v in enumerate(ev)]
    w.figure("trajectory_pca", plots.trajectory_pca([{"label": g.label, "pc": pc, "explained": ev} for g, pc, ev in traj]),
             "The latent state h of every sampled trajectory of input 0 after each supervision step, projected on its "
             "first two principal components (paper Fig. 18–19): GRAM's samples fan out, a deterministic model follows "
             "one path.", {"trajectory_pca_variance": var, "trajectory_pca": pca})


def _fit(w: _Writer, groups: list[Group], widths, n_sup: int) -> None:
    w.section("Variational fit: ELBO, KL and β")
    stoch = [g for g in groups if g.kind != "deterministic"] or groups
    ev, tr = _tagged(groups, lambda g: elbo_report.curve_rows(g.history))
    w.figure("elbo_curves", plots.line_panels([
        {"title": "ELBO on the first 64 training pairs (eval records)", "xlabel": "optimiser update",
         "ylabel": "nats per instance",
         "series": _series(ev, groups, "eval_step", "elbo_full", ": full ELBO (Eq. 13)", "gram")
         + _series(ev, groups, "eval_step", "elbo_surrogate", ": surrogate (Eq. 14)", "deterministic")},
        {"title": "Training surrogate (−loss)", "xlabel": "optimiser update", "ylabel": "nats per instance",
         "series": _series(tr, groups, "svi_step", "surrogate_elbo")}]),
        "The full-trajectory ELBO and the truncated surrogate the model is trained on (App. A.3): both should rise; "
        "their gap is the KL of the transitions the surrogate leaves out.",
        {"app_a3_check": _tagged(groups, lambda g: [elbo_report.a3_check(elbo_report.elbo_curves(g.history))]),
         "elbo_curves": ev, "train_curves": tr})
    kl_final, kl_over = _tagged(stoch, lambda g: elbo_report.kl_rows(
        np.nanmean(g.dt["training"]["final_kl_per_transition"].values, axis=0), g.history, g.dt.attrs["n_sup"],
        g.dt.attrs["n_transitions"] // g.dt.attrs["n_sup"]))
    first = stoch[0]
    w.figure("kl_per_step", plots.line_panels([
        {"title": "KL per transition (final model, held-out inputs)", "xlabel": "transition (n·T + t)",
         "ylabel": "KL(q ‖ p), nats per instance", "series": _series(kl_final, stoch, "transition", "kl")},
        {"title": "KL per supervision step over training", "xlabel": "optimiser update", "ylabel": "KL, nats per instance",
         "series": [{"label": f"step {n}", "color": plots.matplotlib.colormaps["viridis"](n / max(1, n_sup)),
                     "x": [r["eval_step"] for r in kl_over if r["run"] == first.label and r["supervision_step"] == n],
                     "y": [r["kl"] for r in kl_over if r["run"] == first.label and r["supervision_step"] == n]}
                    for n in range(1, n_sup + 1)]}]),
        f"How much information the posterior (which sees the answer) puts into each transition (right: {first.label}); "
        "KL near zero everywhere means the noise is ignored (posterior collapse).",
        {"kl_per_transition": kl_final, "kl_over_training": kl_over})
    gap = [{k: r[k] for k in ("run", "eval_step", "posterior_acc", "prior_acc", "accuracy_gap")} for r in ev]
    last_n = {g.label: max((r["n"] for r in tr if r["run"] == g.label and np.isfinite(r["n"])), default=None) for g in groups}
    last_step = [r for r in tr if last_n[r["run"]] is None or r["n"] == last_n[r["run"]]]  # final supervision step
    w.figure("accuracy_gap", plots.line_panels([
        {"title": "Posterior vs prior accuracy", "xlabel": "optimiser update", "ylabel": "accuracy",
         "series": _series(gap, groups, "eval_step", "posterior_acc", ": posterior (sees y)", "gram")
         + _series(gap, groups, "eval_step", "prior_acc", ": prior (test time)", "deterministic")
         + _series(last_step, groups, "svi_step", "posterior_acc", ": posterior, training batches", "train")}]),
        "Accuracy of prior rollouts (held-out) and of guide reconstructions during training (held-out when logged, "
        "else exact match to the training batch's target at the last supervision step, lower on multi-solution "
        "tasks): a large lasting gap means the model leans on the guide seeing the answer (β too small).",
        {"accuracy_gap": gap})
    for g in (g for g in groups if g.kind != "deterministic"):
        khat, S = np.nanmedian(g.dt["diversity"]["pareto_khat"].values, axis=0), g.dt["sample_stats"].sizes["draw"]
        rows = [{"run": g.label, "instance": i, "khat": float(k), "threshold": diversity.khat_threshold(S)}
                for i, k in enumerate(khat)]
        inst = list(range(min(4, len(khat))))
        w.figure(f"log_weights_{g.name}", plots.log_weight_dist(g.dt, g.label, inst, khat),
                 f"{g.label}: log p − log q of guide trajectories for the first inputs, with Pareto k̂ (above "
                 f"{diversity.khat_threshold(S):.2f} the guide is a poor importance proposal for the posterior).",
                 {f"pareto_khat_{g.name}": rows})
    summ = _rows([g for g in groups if g.kind != "deterministic"], summary_rows, widths)
    beta = elbo_report.beta_sensitivity([{"task": g.task.name, **r} for g, r in zip(
        [g for g in groups if g.kind != "deterministic"], summ)])
    if beta:
        w.figure("beta_sensitivity", plots.line_panels([
            {"title": t, "xlabel": "β (KL weight)", "ylabel": t, "logx": True,
             "series": [{"label": beta[0]["task"], "x": [r["beta"] for r in beta], "y": [r[k] for r in beta]}]}
            for t, k in (("prior accuracy", "accuracy"), ("guide accuracy", "guide_accuracy"), ("total KL", "kl_total"))]),
            "Final prior and guide accuracy and total KL per transition of runs that differ only in β.",
            {"beta_sensitivity": beta})
    chains = _rows(groups, chain_rows)
    if chains:
        w.parts.append("<p>ESS and R-hat of per-draw statistics with independently trained runs as chains "
                       "(R-hat near 1: the runs agree on the predictive distribution).</p>" + w.table("chain_diagnostics", chains, open_=True))


def _checks(w: _Writer, groups: list[Group]) -> None:
    w.section("Predictive checks")
    val, stats = _rows(groups, ppc.ppc_rows)
    w.figure("ppc_validity", plots.grouped_bars(
        "Validity of answers", "fraction valid", ["data targets", "prior samples", "guide reconstructions"],
        {r["run"]: [r["data_valid"], r["prior_valid"], r["guide_valid"]] for r in val}),
        "Valid answers among the data targets (1 by construction), prior samples and guide reconstructions.",
        {"ppc_validity": val})
    same = [g for g in groups if g.task.name == groups[0].task.name]  # statistics differ between tasks
    names = [r["statistic"] for r in stats if r["run"] == groups[0].label]
    pick = lambda g, k: [r[k] for r in stats if r["run"] == g.label]  # noqa: E731
    w.figure("ppc_statistics", plots.grouped_bars(
        f"Answer statistics: samples vs data ({groups[0].task.name})", "mean per answer", names,
        {g.label: pick(g, "sample_mean") for g in same}, {g.label: pick(g, "sample_sd") for g in same},
        reference=pick(groups[0], "data_mean")),
        "Mean of each statistic per answer in prior samples (bars, ±1 s.d.) and in the data (black ticks): token "
        "counts and the task's own statistics (conflict edges, queens placed, ...: Task.answer_statistics).",
        {"ppc_statistics": stats})


def _galleries(w: _Writer, groups: list[Group]) -> None:
    w.section("Solution galleries")
    for g in groups:
        items = gallery_items(g)
        rows = [{"run": g.label, "input": it["input"], "answer": str(g.task.decode_output(s["y"])).replace("\n", " / "),
                 "count": s["count"], "valid": s["valid"]} for it in items for s in it["samples"]]
        w.figure(f"gallery_{g.name}", plots.gallery(g.task, g.label, items),
                 f"{g.label}: for the first inputs, the data target and the most frequent distinct prior samples "
                 f"(×count of the draws, red title = invalid; {g.task.drawing_key}).",
                 {f"gallery_{g.name}": rows})


def build_report(runs: list[RunData], out_html: str | Path, widths=(1, 5, 20), max_inputs: int = 200) -> dict:
    """Analyse ``runs`` and write the report; returns ``{"html", "figures": {name: png}, "tables": {name: csv,
    or None when empty}, "datatrees": {group: nc}}``."""
    if not runs:
        raise ValueError("build_report needs at least one run")
    widths = sorted({int(w) for w in widths})
    out_html = Path(out_html)
    fig_dir, data_dir = out_html.parent / f"{out_html.stem}_figures", out_html.parent / f"{out_html.stem}_data"
    groups = analyse(runs, widths, max_inputs)
    trees = {g.name: str(save_datatree(g.dt, data_dir / f"{g.name}.nc")) for g in groups}
    n_sup = groups[0].dt.attrs["n_sup"]
    w = _Writer(fig_dir)
    w.section("Summary", "One row per run (runs that differ only in their seed are pooled as chains). Accuracy is "
              "the fraction of prior samples (the test-time sampler, which never sees the answer) that are valid; "
              "docs/analysis.md explains every column.")
    w.parts.append(w.table("summary", _rows(groups, summary_rows, widths), open_=True))
    _scaling(w, groups, widths, n_sup)
    _diversity(w, groups, n_sup)
    _fit(w, groups, widths, n_sup)
    _checks(w, groups)
    _galleries(w, groups)
    title = f"GRAM analysis: {', '.join(sorted({g.task.name for g in groups}))}"
    head = (f"<h1>{html.escape(title)}</h1><p class='note'>Runs: {html.escape('; '.join(g.label for g in groups))}. "
            f"Up to {max_inputs} held-out inputs per run; widths N = {widths}; prior samples run to depth 2·N_sup. "
            f"Figures are saved as PNG and tables as CSV in {html.escape(fig_dir.name)}/, the samples as ArviZ "
            f"DataTrees (netCDF) in {html.escape(data_dir.name)}/.</p>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{head}{''.join(w.parts)}</body></html>")
    atomic_write_bytes(out_html, lambda f: f.write(page.encode()))
    return {"html": str(out_html), "figures": w.figures, "tables": w.tables, "datatrees": trees}
