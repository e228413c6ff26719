"""Analysis of GRAM runs: ArviZ DataTree of trajectories, solution diversity, predictive checks, ELBO report, plots.

Layering: imports ``gram_pyro`` (model core) and ``tasks``, never the CLI; every ArviZ call of the project
lives here (pyro-arviz-notes.md §2).  Entry points:

* :class:`RunData` — one trained run (task, model, held-out split, training log);
* :func:`draw_samples` — prior and guide rollouts, log weights and PCA-projected latent trajectories;
* :func:`build_datatree` / :func:`save_datatree` / :func:`load_datatree` — the ArviZ DataTree and its netCDF file;
* :func:`build_report` — one self-contained HTML report with PNG figures and CSV tables.

docs/analysis.md explains every number and figure.
"""

from gram_analysis.datatree import build_datatree, load_datatree, save_datatree
from gram_analysis.report import build_report
from gram_analysis.run import RunData, read_history
from gram_analysis.sampling import RunSamples, draw_samples

__all__ = [
    "RunData",
    "RunSamples",
    "build_datatree",
    "build_report",
    "draw_samples",
    "load_datatree",
    "read_history",
    "save_datatree",
]
