"""geomhead: the geometry of projection heads in self-supervised learning.

The library behind the Snakemake/DVC pipeline: data and differentiable augmentations,
backbones and projection heads, SSL losses, deterministic resumable pretraining and the
collapse-dynamics cube. See README.md for the pipeline and params.yaml for its settings.
"""

__version__ = "0.1.0"
