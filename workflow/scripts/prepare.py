"""Rule prepare: the dataset as one .npz (geomhead.data)."""

from geomhead.data import prepare_dataset, save_dataset
from geomhead.workflow import logged

snakemake = snakemake  # noqa: F821 (injected by Snakemake)

with logged(snakemake.log):
    data = snakemake.params.data
    dataset = prepare_dataset(
        data["dataset"], root=data["root"], test_fraction=data["test_fraction"], split_seed=data["split_seed"], download=data["download"]
    )
    save_dataset(dataset, snakemake.output[0])
    print(f"{dataset.name}: {len(dataset.x_train)} train / {len(dataset.x_test)} test images of shape {dataset.image_shape}")
