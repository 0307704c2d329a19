"""Rule curvature: eigenvalue trajectories of the effective Hessian of one run (geomhead.curvature)."""

from pathlib import Path

import torch

from geomhead.cube import write_netcdf
from geomhead.curvature import curvature_of_run
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    torch.set_num_threads(snakemake.threads)
    ds = curvature_of_run(Path(snakemake.input.model).parent, **snakemake.params.settings)
    write_netcdf(ds, snakemake.output[0])
