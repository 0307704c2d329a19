"""Rule claims: the paper's claims with verdicts computed from the cubes (results/claims.md, .html)."""

from geomhead.claims import write_claims
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    write_claims(snakemake.input.dynamics, snakemake.input.curvature, snakemake.input.geometry, snakemake.output.md, snakemake.output.html)
