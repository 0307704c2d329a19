rule combine_dynamics:
    input:
        expand("results/runs/{run}/dynamics.nc", run=RUNS),
    output:
        "results/dynamics.nc",
    params:
        params_json=params_json(config),
    log:
        "logs/combine_dynamics.log",
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/combine_dynamics.py"


rule dynamics_metrics:
    input:
        "results/dynamics.nc",
    output:
        "results/metrics/dynamics.json",
    log:
        "logs/dynamics_metrics.log",
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/dynamics_metrics.py"


rule figure_collapse:
    input:
        "results/dynamics.nc",
    output:
        png="results/figures/collapse.png",
        pdf="results/figures/collapse.pdf",
    log:
        "logs/figure_collapse.log",
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/figure_collapse.py"
