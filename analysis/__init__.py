"""Analysis of GRAM runs (ArviZ DataTree, diversity, ELBO reports, plots). Filled by the analysis issue."""
