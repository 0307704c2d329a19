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
