rule analyze:
    input:
        model="results/runs/{run}/model.pt",
        snapshots="results/runs/{run}/snapshots",
        data=DATA,
    output:
        "results/analysis/{run}/geometry.nc",
    params:
        settings=config["analysis"],
    log:
        "logs/analyze/{run}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/analyze.py"


rule combine_geometry:
    input:
        expand("results/analysis/{run}/geometry.nc", run=RUNS),
    output:
        "results/geometry.nc",
    params:
        params_json=params_json(config, "analysis"),
    log:
        "logs/combine_geometry.log",
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/combine_geometry.py"
