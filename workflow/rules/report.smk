# Figures (one rule per entry of geomhead.figures.FIGURES), the claims table and the DVC metrics.
# All of them read only the combined cubes; `snakemake --report results/report.html` collects the
# figures (with the captions in workflow/report/) and the claims into one self-contained page.
# They take seconds, so on a cluster they run on the submitting node (localrule) instead of queueing.
from geomhead.figures import FIGURES

CUBES = {cube: f"results/{cube}.nc" for cube in ("dynamics", "curvature", "geometry")}
FIGURE_FILES = [f"results/figures/{name}.{ext}" for name in FIGURES for ext in ("png", "pdf")]
PLOT_TABLES = [f"results/plots/{name}.csv" for name, figure in FIGURES.items() if figure.table]


for _name, _figure in FIGURES.items():

    rule:
        name:
            f"figure_{_name}"
        input:
            **{cube: CUBES[cube] for cube in _figure.cubes},
        output:
            png=report(
                f"results/figures/{_name}.png",
                caption=f"../report/figures/{_name}.rst",
                category="Figures",
                subcategory=_figure.section,
            ),
            pdf=f"results/figures/{_name}.pdf",
            **({"table": f"results/plots/{_name}.csv"} if _figure.table else {}),
        localrule: True
        params:
            name=_name,
        log:
            f"logs/figures/{_name}.log",
        conda:
            "../envs/geomhead.yaml"
        script:
            "../scripts/figure.py"


rule claims:
    localrule: True
    input:
        **CUBES,
    output:
        md="results/claims.md",
        html=report("results/claims.html", caption="../report/claims.rst", category="Claims"),
    log:
        "logs/claims.log",
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/claims.py"


rule configuration:
    localrule: True
    input:
        CUBES["dynamics"],
    output:
        report("results/configuration.html", caption="../report/configuration.rst", category="Configuration"),
    log:
        "logs/configuration.log",
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/configuration.py"


rule metrics:
    localrule: True
    input:
        **CUBES,
    output:
        "results/metrics.json",
    log:
        "logs/metrics.log",
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/metrics.py"


rule figures:
    """Every figure, the claims and the metrics (the DVC `report` stage's target)."""
    input:
        FIGURE_FILES,
        PLOT_TABLES,
        "results/claims.md",
        "results/claims.html",
        "results/configuration.html",
        "results/metrics.json",
