"""Rule combine_dynamics: per-run dynamics.nc files -> results/dynamics.nc along `config`."""

from geomhead.cube import combine, write_netcdf
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    cube = combine(snakemake.input, "geomhead collapse dynamics", snakemake.params.params_json)
    write_netcdf(cube, snakemake.output[0])
    print(cube)
