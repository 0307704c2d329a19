rule prepare:
    output:
        DATA,
    params:
        data=config["data"],
    log:
        "logs/prepare.log",
    conda:
        "../envs/geomhead.yaml"
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../scripts/prepare.py"
