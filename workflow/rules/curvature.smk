rule curvature:
    input:
        model="results/runs/{run}/model.pt",
        snapshots="results/runs/{run}/snapshots",
    output:
        "results/curvature/{run}/curvature.nc",
    params:
        settings=config["curvature"],
    log:
        "logs/curvature/{run}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS,
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/curvature.py"


rule combine_curvature:
    input:
        expand("results/curvature/{run}/curvature.nc", run=RUNS),
    output:
        "results/curvature.nc",
    params:
        params_json=params_json(config, "curvature"),
    log:
        "logs/combine_curvature.log",
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/combine_curvature.py"
