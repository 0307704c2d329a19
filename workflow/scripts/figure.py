"""Rule figure_{name}: one figure of geomhead.figures.FIGURES from the cubes (PNG, PDF, CSV table)."""

from geomhead.figures import render
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    cubes = {key: path for key, path in snakemake.input.items()}
    render(snakemake.params.name, cubes, snakemake.output.png, snakemake.output.pdf, snakemake.output.get("table"))
