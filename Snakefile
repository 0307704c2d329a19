# geomhead: the geometry of SSL projection heads. Rules live in workflow/rules, logic in src/geomhead.
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")


configfile: "params.yaml"


sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from geomhead.config import ConfigError, validate_params  # noqa: E402
from geomhead.workflow import check_conda  # noqa: E402

# Validate against workflow/schemas/params.schema.yaml (defaults filled in) before any job runs.
try:
    config.update(validate_params(config, source="params.yaml (with --config/--configfile overrides)"))
except ConfigError as error:
    sys.stderr.write(f"{error}\n")
    sys.exit(1)
check_conda(workflow)


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/dynamics.smk"
include: "workflow/rules/curvature.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


rule all:
    input:
        "results/dynamics.nc",
        "results/curvature.nc",
        "results/geometry.nc",
        rules.figures.input,
    default_target: True
