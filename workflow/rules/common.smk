import re

from geomhead.config import expand_runs, run_config
from geomhead.workflow import expose_library, gpu_count, params_json

# Scripts import the library from src/ (no install needed inside a --use-conda environment).
expose_library(Path(workflow.basedir) / "src")

RUNS = [run.id for run in expand_runs(config)]
DATASET = config["data"]["dataset"]
DATA = f"results/data/{DATASET}.npz"
GPUS = gpu_count(config)


wildcard_constraints:
    run="|".join(re.escape(run) for run in RUNS),


def config_of(wildcards):
    """Everything one run depends on (so the params trigger reruns only changed runs)."""
    return run_config(config, wildcards.run)
