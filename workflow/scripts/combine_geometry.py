"""Rule combine_geometry: per-run geometry.nc files -> results/geometry.nc along `config`."""

from geomhead.cube import combine, write_netcdf
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    write_netcdf(combine(snakemake.input, "geomhead degeneracy and invariance analysis", snakemake.params.params_json), snakemake.output[0])
