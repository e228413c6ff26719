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
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from analysis import diversity, elbo_report, plots, ppc
from analysis.datatree import build_datatree, save_datatree
from analysis.run import RunData, chain_key, run_kind
from analysis.sampling import draw_samples

HTML_ROWS = 60  # longer tables are cut in the HTML (the CSV has every row)


@dataclass
class Group:
    """Runs of one configuration (chains) and their DataTree."""

    name: str
    label: str
    kind: str
    task: object
    dt: xr.DataTree


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "run"


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


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
        groups.append(Group(name, label, run_kind(members[0]), members[0].task, dt))
    return groups


def _mean(a) -> float:
    a = np.asarray(a, dtype=float)
    return float(np.nanmean(a)) if np.isfinite(a).any() else math.nan


# ------------------------------------------------------------------ tables (one row = one dict)
def width_table(groups: list[Group], widths) -> list[dict]:
    """Coverage@N, distinct valid answers and pass@N (≥ 1 valid among the first N) per run and width."""
    rows = []
    for g in groups:
        y, valid = g.dt["predictions"]["y"].values, g.dt["sample_stats"]["valid"].values.astype(bool)
        cov = g.dt["diversity"]["coverage"]
        for n in widths:
            if n > y.shape[1]:
                continue
            per_chain = [diversity.distinct_valid(g.task, np.swapaxes(y[c, :n], 0, 1), valid[c, :n].T) for c in range(len(y))]
            rows.append({"run": g.label, "kind": g.kind, "width": n,
                         "coverage": _mean(cov.sel(width=n).values) if n in cov["width"].values else math.nan,
                         "distinct_valid": _mean(per_chain), "pass": float(valid[:, :n].any(axis=1).mean())})
    return rows


def depth_table(groups: list[Group], draws: int = 8) -> list[dict]:
    """Accuracy (fraction of valid answers) of prior rollouts after each supervision step (first ``draws`` draws)."""
    rows = []
    for g in groups:
        ys = g.dt["predictions"]["y_step"].values[:, :draws]  # chain, draw, instance, step, position
        x = g.dt["constant_data"]["x"].values
        for d in range(ys.shape[3]):
            acc = [diversity.validity(g.task, x, np.swapaxes(ys[c, :, :, d], 0, 1)).mean() for c in range(len(ys))]
            rows.append({"run": g.label, "kind": g.kind, "depth": d + 1, "accuracy": float(np.mean(acc))})
    return rows


def kl_tables(groups: list[Group]) -> tuple[list[dict], list[dict]]:
    """KL per transition of the final model (held-out inputs) and each supervision step's KL over training."""
    final, over = [], []
    for g in groups:
        tr, T = g.dt["training"], g.dt.attrs["n_transitions"] // g.dt.attrs["n_sup"]
        for t, v in enumerate(np.nanmean(tr["final_kl_per_transition"].values, axis=0)):
            final.append({"run": g.label, "transition": t + 1, "supervision_step": t // T + 1, "kl": float(v)})
        kl = tr["kl_per_transition"].values[0]  # first chain
        for i, step in enumerate(tr["eval_step"].values[0]):
            if np.isfinite(step) and np.isfinite(kl[i]).any():
                for n, v in enumerate(kl[i].reshape(-1, T).sum(axis=1)):
                    over.append({"run": g.label, "eval_step": int(step), "supervision_step": n + 1, "kl": float(v)})
    return final, over


def training_tables(groups: list[Group]) -> tuple[list[dict], list[dict]]:
    """Eval-record curves (ELBO, surrogate, accuracies) and the train surrogate per update (first chain)."""
    ev, tr = [], []
    for g in groups:
        t = g.dt["training"]
        for i, step in enumerate(t["eval_step"].values[0]):
            if np.isfinite(step):
                ev.append({"run": g.label, "eval_step": int(step), **{
                    k: float(t[k].values[0, i]) for k in ("elbo_full", "elbo_surrogate", "posterior_acc", "prior_acc")}})
        for i, step in enumerate(t["svi_step"].values[0]):
            if np.isfinite(step):
                tr.append({"run": g.label, "svi_step": int(step), "surrogate_elbo": -float(t["loss"].values[0, i]),
                           "kl": float(t["kl"].values[0, i])})
    return ev, tr


def ppc_tables(groups: list[Group]) -> tuple[list[dict], list[dict]]:
    """Validity of data, prior and guide samples; task statistics in data vs prior samples (first chain)."""
    val, stats = [], []
    for g in groups:
        x, tgt = g.dt["constant_data"]["x"].values, g.dt["observed_data"]["y"].values
        prior = np.swapaxes(g.dt["predictions"]["y"].values[0], 0, 1)
        guide = np.swapaxes(g.dt["posterior_predictive"]["y"].values[0], 0, 1)
        check = ppc.validity_check(g.task, x, tgt, prior)
        gp = ppc.guide_vs_prior(g.task, x, tgt, guide, prior)
        val.append({"run": g.label, "data_valid": check["data_valid_rate"], "prior_valid": check["sample_valid_rate"],
                    "guide_valid": gp["guide_accuracy"], "prior_exact_match": gp["prior_exact_match"],
                    "guide_exact_match": gp["guide_exact_match"], "invalid_data_inputs": len(check["invalid_data_inputs"])})
        stats += [{"run": g.label, **r} for r in ppc.statistic_table(g.task, x, tgt, prior)]
    return val, stats


def summary_table(groups: list[Group], widths) -> list[dict]:
    rows = []
    for g in groups:
        s, d, t = g.dt["sample_stats"], g.dt["diversity"], g.dt["training"]
        khat = d["pareto_khat"].values
        S = s.sizes["draw"]
        row = {"run": g.label, "mode": g.dt.attrs["mode"], "beta": g.dt.attrs["beta"], "chains": s.sizes["chain"],
               "inputs": s.sizes["instance"], "draws": S, "accuracy": _mean(s["valid"].values),
               "guide_accuracy": _mean(s["guide_valid"].values)}
        for n in widths:
            if n in d["coverage"]["width"].values:
                row[f"coverage@{n}"] = _mean(d["coverage"].sel(width=n).values)
        row.update({"distinct_valid": _mean(d["distinct_valid"].values), "entropy": _mean(d["entropy"].values),
                    "hamming": _mean(d["hamming"].values), "elbo_full": _mean(t["final_elbo"].values),
                    "khat_median": _mean(np.nanmedian(khat)) if np.isfinite(khat).any() else math.nan,
                    "khat_above_threshold": float((khat > diversity.khat_threshold(S)).mean())
                    if np.isfinite(khat).any() else math.nan})
        rows.append(row)
    return rows


def chain_table(groups: list[Group]) -> list[dict]:
    rows = []
    for g in groups:
        d = g.dt["diversity"]
        for stat in ("valid", "log_weight"):
            if f"rhat_{stat}" in d:
                rows.append({"run": g.label, "statistic": stat, "ess_median": _mean(np.nanmedian(d[f"ess_{stat}"].values)),
                             "rhat_median": _mean(np.nanmedian(d[f"rhat_{stat}"].values)),
                             "rhat_max": _mean(np.nanmax(d[f"rhat_{stat}"].values))})
    return rows


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


def _table_html(name: str, rows: list[dict]) -> str:
    if not rows:
        return f'<p id="table-{name}"><em>Table {name}: nothing to show for these runs.</em></p>'
    cols = list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(r.get(c, ''))}</td>" for c in cols) + "</tr>" for r in rows[:HTML_ROWS])
    more = f"<p class='note'>First {HTML_ROWS} of {len(rows)} rows; all rows in {name}.csv.</p>" if len(rows) > HTML_ROWS else ""
    return (f'<details><summary>Table: {html.escape(name)} ({len(rows)} rows)</summary>'
            f'<table id="table-{name}"><tr>{head}</tr>{body}</table>{more}</details>')


def _csv_bytes(rows: list[dict]) -> bytes:
    buf = io.StringIO()
    cols = list(dict.fromkeys(k for r in rows for k in r))
    w = csv.DictWriter(buf, fieldnames=cols)
    w.writeheader()
    w.writerows({k: (v if not isinstance(v, np.ndarray) else v.tolist()) for k, v in r.items()} for r in rows)
    return buf.getvalue().encode()


_CSS = """body{font-family:sans-serif;max-width:1250px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd}figure{margin:1.5em 0}figcaption{font-size:.95em;color:#333;margin:.3em 0}
table{border-collapse:collapse;font-size:.8em;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}
th{background:#f0f0f0}summary{cursor:pointer;color:#225}.note{font-size:.85em;color:#555}h2{border-bottom:1px solid #ccc}"""


class _Writer:
    """Collects figures and tables: PNG/CSV files under ``folder`` and HTML fragments for the page."""

    def __init__(self, folder: Path):
        self.folder, self.parts, self.figures, self.tables = folder, [], {}, {}

    def table(self, name: str, rows: list[dict]) -> str:
        if rows:
            path = self.folder / f"{name}.csv"
            _atomic_write(path, _csv_bytes(rows))
            self.tables[name] = str(path)
        else:
            self.tables[name] = None
        return _table_html(name, rows)

    def figure(self, name: str, fig, caption: str, tables: dict[str, list[dict]]) -> None:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        if hasattr(fig, "number"):  # a pyplot figure (arviz-plots): release it
            import matplotlib.pyplot as plt

            plt.close(fig)
        png = buf.getvalue()
        path = self.folder / f"{name}.png"
        _atomic_write(path, png)
        self.figures[name] = str(path)
        img = base64.b64encode(png).decode()
        tabs = "".join(self.table(k, v) for k, v in tables.items())
        self.parts.append(f'<figure><img id="fig-{name}" alt="{html.escape(caption)}" src="data:image/png;base64,{img}">'
                          f"<figcaption>{html.escape(caption)}</figcaption>{tabs}</figure>")

    def section(self, title: str, text: str = "") -> None:
        self.parts.append(f"<h2>{html.escape(title)}</h2>" + (f"<p>{text}</p>" if text else ""))


def _series(rows, groups, x, y, kinds=True):
    return [{"label": g.label, "kind": g.kind if kinds else "gram", "x": [r[x] for r in rows if r["run"] == g.label],
             "y": [r[y] for r in rows if r["run"] == g.label]} for g in groups]


def build_report(runs: list[RunData], out_html: str | Path, widths=(1, 5, 20), max_inputs: int = 200) -> dict:
    """Analyse ``runs`` and write the report; returns ``{"html", "figures": {name: png}, "tables": {name: csv
    or None when empty}, "datatrees": {group: nc}}``."""
    if not runs:
        raise ValueError("build_report needs at least one run")
    widths = sorted({int(w) for w in widths})
    out_html = Path(out_html)
    fig_dir, data_dir = out_html.parent / f"{out_html.stem}_figures", out_html.parent / f"{out_html.stem}_data"
    groups = analyse(runs, widths, max_inputs)
    trees = {g.name: str(save_datatree(g.dt, data_dir / f"{g.name}.nc")) for g in groups}
    w = _Writer(fig_dir)
    stoch = [g for g in groups if g.kind != "deterministic"]
    n_sup = groups[0].dt.attrs["n_sup"]

    w.section("Summary", "One row per run (runs that differ only in their seed are pooled as chains). Accuracy is "
              "the fraction of prior samples (the test-time sampler, which never sees the answer) that are valid; "
              "see docs/analysis.md for every column.")
    w.parts.append(w.table("summary", summary_table(groups, widths)))

    w.section("Width and depth scaling")
    wt = width_table(groups, widths)
    w.figure("coverage_vs_width", plots.line_panels([
        {"title": "Coverage@N", "xlabel": "samples per input N", "ylabel": "fraction of all solutions found",
         "series": _series(wt, groups, "width", "coverage"), "logx": True},
        {"title": "Distinct valid answers", "xlabel": "samples per input N", "ylabel": "distinct valid answers per input",
         "series": _series(wt, groups, "width", "distinct_valid"), "logx": True},
        {"title": "Pass@N", "xlabel": "samples per input N", "ylabel": "inputs with ≥ 1 valid answer",
         "series": _series(wt, groups, "width", "pass"), "logx": True}], "Scaling with width"),
        "How much of each input's solution set N prior samples cover, how many distinct valid answers they give, "
        "and how often at least one is valid, as N grows (dashed: deterministic baseline).", {"coverage_vs_width": wt})
    dt_rows = depth_table(groups)
    w.figure("accuracy_vs_depth", plots.line_panels([
        {"title": "Accuracy vs depth", "xlabel": "supervision steps at test time", "ylabel": "fraction of valid answers",
         "series": _series(dt_rows, groups, "depth", "accuracy"), "vline": n_sup, "vline_label": "training depth N_sup"}]),
        "Accuracy of prior samples after each supervision step, run past the training depth (dotted line).",
        {"accuracy_vs_depth": dt_rows})

    w.section("Diversity of answers and trajectories")
    ent = [{"run": g.label, "position": int(p), "entropy": float(v)} for g in groups
           for p, v in enumerate(np.nanmean(g.dt["diversity"]["entropy"].values, axis=(0, 1)))]
    spread = [{"run": g.label, "step": int(s) + 1, "spread": float(v)} for g in groups
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
    pca_rows = [{"run": g.label, "draw": int(d), "step": int(s) + 1, **{f"pc{k + 1}": float(v) for k, v in enumerate(vec)}}
                for g in shown for d, line in enumerate(g.dt["trajectory"]["pc"].values[0, :, 0]) for s, vec in enumerate(line)]
    ev_rows = [{"run": g.label, "component": k + 1, "explained_variance": float(v)}
               for g in shown for k, v in enumerate(g.dt["trajectory"]["explained_variance_ratio"].values[0, 0])]
    w.figure("trajectory_pca", plots.trajectory_pca([{"label": g.label, "pc": g.dt["trajectory"]["pc"].values[0, :, 0],
                                                       "explained": g.dt["trajectory"]["explained_variance_ratio"].values[0, 0]}
                                                      for g in shown]),
             "The latent state h of every sampled trajectory of input 0 after each supervision step, projected on its "
             "first two principal components (paper Fig. 18–19): GRAM's samples fan out, a deterministic model follows one path.",
             {"trajectory_pca_variance": ev_rows, "trajectory_pca": pca_rows})

    w.section("Variational fit: ELBO, KL and β")
    ev, tr = training_tables(groups)
    w.figure("elbo_curves", plots.line_panels([
        {"title": "Held-out ELBO (eval records)", "xlabel": "optimiser update", "ylabel": "nats per instance",
         "series": [s for g in groups for s in (
             {"label": f"{g.label}: full ELBO (Eq. 13)", "kind": "gram",
              "x": [r["eval_step"] for r in ev if r["run"] == g.label], "y": [r["elbo_full"] for r in ev if r["run"] == g.label]},
             {"label": f"{g.label}: surrogate (Eq. 14)", "kind": "deterministic",
              "x": [r["eval_step"] for r in ev if r["run"] == g.label], "y": [r["elbo_surrogate"] for r in ev if r["run"] == g.label]})]},
        {"title": "Training surrogate (−loss)", "xlabel": "optimiser update", "ylabel": "nats per instance",
         "series": _series(tr, groups, "svi_step", "surrogate_elbo")}]),
        "The full-trajectory ELBO and the truncated surrogate the model is trained on (App. A.3): both should rise; "
        "their gap is the KL of the transitions the surrogate leaves out.", {"elbo_curves": ev, "train_curves": tr})
    kl_final, kl_over = kl_tables(stoch or groups)
    first = (stoch or groups)[0]
    w.figure("kl_per_step", plots.line_panels([
        {"title": "KL per transition (final model, held-out inputs)", "xlabel": "transition (n·T + t)",
         "ylabel": "KL(q ‖ p) nats per instance", "series": _series(kl_final, stoch or groups, "transition", "kl")},
        {"title": f"KL per supervision step over training: {first.label}", "xlabel": "optimiser update",
         "ylabel": "KL nats per instance", "series": [
             {"label": f"step {n}", "kind": "gram", "color": plots.matplotlib.colormaps["viridis"](n / max(1, n_sup)),
              "x": [r["eval_step"] for r in kl_over if r["run"] == first.label and r["supervision_step"] == n],
              "y": [r["kl"] for r in kl_over if r["run"] == first.label and r["supervision_step"] == n]}
             for n in range(1, n_sup + 1)]}]),
        "How much information the posterior (which sees the answer) puts into each transition; KL near zero "
        "everywhere means the noise is ignored (posterior collapse).", {"kl_per_transition": kl_final, "kl_over_training": kl_over})
    gap = [{**r, "gap": r["posterior_acc"] - r["prior_acc"]} for r in ev]
    w.figure("accuracy_gap", plots.line_panels([
        {"title": "Posterior vs prior accuracy", "xlabel": "optimiser update", "ylabel": "accuracy",
         "series": [s for g in groups for s in (
             {"label": f"{g.label}: posterior (sees y)", "kind": "gram", "x": [r["eval_step"] for r in gap if r["run"] == g.label],
              "y": [r["posterior_acc"] for r in gap if r["run"] == g.label]},
             {"label": f"{g.label}: prior (test time)", "kind": "deterministic", "x": [r["eval_step"] for r in gap if r["run"] == g.label],
              "y": [r["prior_acc"] for r in gap if r["run"] == g.label]})]}]),
        "Accuracy of guide reconstructions against prior rollouts during training: a large lasting gap means the model "
        "leans on the guide seeing the answer (β too small).", {"accuracy_gap": gap})
    for g in stoch:
        khat = np.nanmedian(g.dt["diversity"]["pareto_khat"].values, axis=0)
        S = g.dt["sample_stats"].sizes["draw"]
        inst = list(range(min(4, g.dt["sample_stats"].sizes["instance"])))
        rows = [{"run": g.label, "instance": i, "khat": float(k), "threshold": diversity.khat_threshold(S)} for i, k in enumerate(khat)]
        w.figure(f"log_weights_{g.name}", plots.log_weight_dist(g.dt, g.label, inst, khat),
                 f"{g.label}: log p − log q of guide trajectories for the first inputs, with Pareto k̂ (above "
                 f"{diversity.khat_threshold(S):.2f} the guide is a poor importance proposal for the model's posterior).",
                 {f"pareto_khat_{g.name}": rows})
    beta_rows = elbo_report.beta_sensitivity([{"task": g.task.name, "beta": g.dt.attrs["beta"], "run": g.label, **{
        k: v for k, v in summary_table([g], widths)[0].items() if k in ("accuracy", "guide_accuracy", f"coverage@{widths[-1]}")},
        "kl_total": float(np.nansum(np.nanmean(g.dt["training"]["final_kl_per_transition"].values, axis=0)))} for g in stoch])
    if beta_rows:
        xs = [r["beta"] for r in beta_rows]
        w.figure("beta_sensitivity", plots.line_panels([
            {"title": t, "xlabel": "β (KL weight)", "ylabel": t, "logx": True,
             "series": [{"label": beta_rows[0]["task"], "kind": "gram", "x": xs, "y": [r.get(k, math.nan) for r in beta_rows]}]}
            for t, k in (("prior accuracy", "accuracy"), ("guide accuracy", "guide_accuracy"), ("total KL", "kl_total"))]),
            "Final prior and guide accuracy and total KL of runs that differ in β.", {"beta_sensitivity": beta_rows})
    chains = chain_table(groups)
    if chains:
        w.parts.append("<p>ESS and R-hat of per-draw statistics with independently trained runs as chains "
                       "(R-hat near 1: the runs agree on the predictive distribution).</p>" + w.table("chain_diagnostics", chains))

    w.section("Predictive checks")
    val, stats = ppc_tables(groups)
    w.figure("ppc_validity", plots.grouped_bars("Validity of answers", "fraction valid", ["data targets", "prior samples", "guide reconstructions"],
                                                {r["run"]: [r["data_valid"], r["prior_valid"], r["guide_valid"]] for r in val}),
             "Valid answers among the data targets (1 by construction), prior samples and guide reconstructions.",
             {"ppc_validity": val})
    names = [r["statistic"] for r in stats if r["run"] == groups[0].label]
    w.figure("ppc_statistics", plots.grouped_bars(
        "Answer statistics: samples vs data", "mean per answer", names,
        {g.label: [r["sample_mean"] for r in stats if r["run"] == g.label][: len(names)] for g in groups},
        {g.label: [r["sample_sd"] for r in stats if r["run"] == g.label][: len(names)] for g in groups},
        reference=[r["data_mean"] for r in stats if r["run"] == groups[0].label]),
        "Mean of each statistic per answer in prior samples (bars, ±1 s.d.) and in the data (black ticks): token counts, "
        "and conflict edges or queens placed where the task has them.", {"ppc_statistics": stats})

    w.section("Solution galleries")
    for g in groups:
        items = gallery_items(g)
        rows = [{"run": g.label, "input": it["input"], "answer": str(g.task.decode_output(s["y"])).replace("\n", " / "),
                 "count": s["count"], "valid": s["valid"]} for it in items for s in it["samples"]]
        w.figure(f"gallery_{g.name}", plots.gallery(g.task.name, g.label, items),
                 f"{g.label}: for the first inputs, the data target and the most frequent distinct prior samples "
                 "(×count of the draws, red title = invalid).", {f"gallery_{g.name}": rows})

    title = f"GRAM analysis: {', '.join(sorted({g.task.name for g in groups}))}"
    head = (f"<h1>{html.escape(title)}</h1><p class='note'>Runs: {html.escape(', '.join(g.label for g in groups))}. "
            f"Inputs analysed per run: up to {max_inputs} held-out inputs; widths N = {widths}; prior samples run to depth "
            f"2·N_sup. Figures are also saved as PNG and tables as CSV in {html.escape(fig_dir.name)}/, and the samples as "
            f"ArviZ DataTrees (netCDF) in {html.escape(data_dir.name)}/.</p>")
    page = f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>{_CSS}</style></head>"
    _atomic_write(out_html, (page + "<body>" + head + "".join(w.parts) + "</body></html>").encode())
    return {"html": str(out_html), "figures": w.figures, "tables": w.tables, "datatrees": trees}
