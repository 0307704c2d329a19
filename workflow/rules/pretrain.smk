rule pretrain:
    input:
        data=DATA,
    output:
        model="results/runs/{run}/model.pt",
        snapshots=directory("results/runs/{run}/snapshots"),
        dynamics="results/runs/{run}/dynamics.nc",
    params:
        config=config_of,
        resume=lambda wildcards: f"results/resume/{wildcards.run}",
    log:
        "logs/pretrain/{run}.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS,
    conda:
        "../envs/geomhead.yaml"
    script:
        "../scripts/pretrain.py"
