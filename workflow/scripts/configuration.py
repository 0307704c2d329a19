"""Rule configuration: the run configuration as a page of the report (results/configuration.html)."""

from geomhead.report import write_configuration
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    write_configuration(snakemake.input[0], snakemake.output[0])
