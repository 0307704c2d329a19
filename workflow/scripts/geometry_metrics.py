"""Rule geometry_metrics: headline numbers per run for DVC metrics."""

import xarray as xr

from geomhead.atomic import write_json
from geomhead.geometry import headline
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log), xr.open_dataset(snakemake.input[0]) as cube:
    write_json(headline(cube), snakemake.output[0])
