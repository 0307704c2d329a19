#!/usr/bin/env python3
"""A single-node SLURM cluster on this machine, to try `snakemake --profile profiles/slurm`.

Needs Debian's slurm-wlm slurmctld slurmd slurm-client (installs nothing). Starts slurmctld and slurmd on
free ports with everything under one folder, prints the environment and the command to use, and cancels
every job and stops both daemons on Ctrl-C. The logic is geomhead.slurm_local, shared with
tests/test_slurm.py.

    .venv/bin/python scripts/slurm_local_cluster.py [--gpus 1] [--root DIR]
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from geomhead.slurm_local import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
