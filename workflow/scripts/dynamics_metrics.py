"""Rule dynamics_metrics: headline numbers per config for DVC metrics."""

import xarray as xr

from geomhead.atomic import write_json
from geomhead.figures import dynamics_summary
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log), xr.open_dataset(snakemake.input[0]) as cube:
    write_json(dynamics_summary(cube), snakemake.output[0])
