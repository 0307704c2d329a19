"""Rule metrics: headline numbers per config and the claim verdict counts (results/metrics.json, DVC metrics)."""

from geomhead.claims import write_metrics
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    write_metrics(snakemake.input.dynamics, snakemake.input.curvature, snakemake.input.geometry, snakemake.output[0])
