"""Rule combine_curvature: per-run curvature.nc files -> results/curvature.nc along `config`."""

from geomhead.cube import combine, write_netcdf
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    write_netcdf(combine(snakemake.input, "geomhead effective-Hessian spectra", snakemake.params.params_json), snakemake.output[0])
