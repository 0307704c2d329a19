"""Rule figure_collapse: the paper's collapse plot from results/dynamics.nc."""

import xarray as xr

from geomhead.figures import plot_collapse
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log), xr.open_dataset(snakemake.input[0]) as cube:
    plot_collapse(cube, snakemake.output.png, snakemake.output.pdf)
