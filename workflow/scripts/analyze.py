"""Rule analyze: pullback metrics, degeneracy, orbits, paths, probes, whitening of one run (geomhead.geometry)."""

from pathlib import Path

from geomhead.cube import write_netcdf
from geomhead.geometry import geometry_of_run
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    ds = geometry_of_run(
        Path(snakemake.input.model).parent, snakemake.input.data, settings=snakemake.params.settings, threads=snakemake.threads
    )
    write_netcdf(ds, snakemake.output[0])
