"""Rule pretrain: one SSL run (geomhead.train), resumable from results/resume/{run}."""

from pathlib import Path

from geomhead.train import RunPaths, pretrain
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    out = snakemake.output
    paths = RunPaths(Path(out.model), Path(out.snapshots), Path(out.dynamics), Path(snakemake.params.resume))
    pretrain(snakemake.params.config, snakemake.input.data, paths, threads=snakemake.threads)
