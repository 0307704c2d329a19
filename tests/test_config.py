"""params.yaml: schema, defaults, error messages, the sweep and run ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from geomhead.config import (
    ConfigError,
    Run,
    expand_runs,
    load_params,
    load_schema,
    logged_steps,
    run_by_id,
    run_config,
    schema_reference,
    snapshot_steps,
    validate_params,
)

ROOT = Path(__file__).resolve().parents[1]


def test_repository_params_are_valid() -> None:
    params = load_params(ROOT / "params.yaml")
    runs = expand_runs(params)
    assert {r.loss for r in runs} >= {"simsiam", "infonce", "vicreg"}
    assert {r.activation for r in runs} == {"linear", "relu", "gelu", "swish"}
    assert {r.init for r in runs} == {"normal", "collapsed"}


def test_empty_params_get_every_default() -> None:
    params = validate_params({})
    schema = load_schema()

    def walk(node: dict, value: dict, prefix: str) -> None:
        for name, sub in node.get("properties", {}).items():
            assert name in value, f"{prefix}{name} has no default"
            if sub.get("type") == "object" and sub.get("properties"):
                walk(sub, value[name], f"{prefix}{name}.")

    walk(schema, params, "")


def test_every_key_has_a_description() -> None:
    def walk(node: dict, prefix: str) -> None:
        for name, sub in node.get("properties", {}).items():
            assert sub.get("description"), f"{prefix}{name} lacks a description"
            walk(sub, f"{prefix}{name}.")
            if "items" in sub:
                walk(sub["items"], f"{prefix}{name}[].")

    walk(load_schema(), "")


def test_every_object_forbids_unknown_keys() -> None:
    def walk(node: dict, prefix: str) -> None:
        if node.get("properties") is not None:
            assert node.get("additionalProperties") is False, prefix
        for name, sub in node.get("properties", {}).items():
            walk(sub, f"{prefix}{name}.")
        if "items" in node:
            walk(node["items"], f"{prefix}[].")

    walk(load_schema(), "")


@pytest.mark.parametrize(
    ("raw", "needles"),
    [
        ({"train": {"stepz": 10}}, ["train.stepz", "unknown key", "did you mean 'steps'", "allowed keys"]),
        ({"trian": {}}, ["trian", "unknown key", "did you mean 'train'"]),
        ({"train": {"steps": 0}}, ["train.steps", "0", ">= 1"]),
        ({"train": {"steps": "many"}}, ["train.steps", "'many'", "integer"]),
        ({"data": {"dataset": "mnist"}}, ["data.dataset", "'mnist'", "'digits'", "'cifar10'"]),
        ({"augment": {"scale": [1.2, 0.9]}}, ["augment.scale", "low <= high"]),
        ({"model": {"backbone": "resnet18", "z_dim": 64}, "data": {"dataset": "cifar10"}}, ["model.z_dim", "512"]),
        ({"sweep": {"grid": {"loss": ["simsam"]}}}, ["sweep.grid", "activation"]),
        ({"sweep": {"include": [{"loss": "simsiam"}]}}, ["sweep.include[0]", "each entry needs all of"]),
        ({"sweep": {"grid": None, "include": []}}, ["sweep: no runs"]),
        ({"augment": {"hflip": 1.5}}, ["augment.hflip", "1.5", "<= 1"]),
    ],
)
def test_bad_values_are_named_with_what_is_allowed(raw: dict, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        validate_params(raw)
    message = str(info.value)
    for needle in needles:
        assert needle in message, (needle, message)
    assert "Traceback" not in message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        validate_params({"train": {"steps": -1, "batch_size": 1}, "model": {"z_dim": 0}})
    lines = str(info.value).splitlines()[1:]
    assert len(lines) == 3


def test_load_params_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_params(bad)


def test_grid_and_include_union_without_duplicates() -> None:
    grid = {
        "loss": ["simsiam"],
        "activation": ["relu", "swish"],
        "depth": [2],
        "batchnorm": [False],
        "init": ["collapsed"],
        "lr": [0.05],
        "seed": [0, 1],
    }
    include = [
        {"loss": "simsiam", "activation": "relu", "depth": 2, "batchnorm": False, "init": "collapsed", "lr": 0.05, "seed": 0},
        {"loss": "vicreg", "activation": "gelu", "depth": 3, "batchnorm": True, "init": "normal", "lr": 0.5, "seed": 2},
    ]
    runs = expand_runs(validate_params({"sweep": {"grid": grid, "include": include}}))
    ids = [r.id for r in runs]
    assert ids == [
        "simsiam-relu-d2-bn0-collapsed-lr0.05-s0",
        "simsiam-relu-d2-bn0-collapsed-lr0.05-s1",
        "simsiam-swish-d2-bn0-collapsed-lr0.05-s0",
        "simsiam-swish-d2-bn0-collapsed-lr0.05-s1",
        "vicreg-gelu-d3-bn1-normal-lr0.5-s2",
    ]


def test_run_ids_are_stable_and_readable() -> None:
    run = Run("simsiam", "swish", 2, False, "collapsed", 0.005, 0)
    assert run.id == "simsiam-swish-d2-bn0-collapsed-lr0.005-s0"
    assert Run("byol", "gelu", 1, True, "normal", 1.0, 3).id == "byol-gelu-d1-bn1-normal-lr1-s3"
    assert Run("byol", "gelu", 1, True, "normal", 1e-4, 3).id == "byol-gelu-d1-bn1-normal-lr0.0001-s3"


def test_paper_experiment_1_config() -> None:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    over = yaml.safe_load((ROOT / "config" / "cifar10.yaml").read_text())
    base.update({k: {**base.get(k, {}), **v} if isinstance(v, dict) else v for k, v in over.items()})
    runs = expand_runs(validate_params(base))
    assert len(runs) == 14 * 3
    assert len({(r.activation, r.batchnorm, r.lr) for r in runs}) == 14


def test_run_config_holds_only_what_the_run_depends_on() -> None:
    params = validate_params({})
    run = expand_runs(params)[0]
    config = run_config(params, run.id)
    assert config["run"]["id"] == run.id
    assert config["loss_settings"] == params["losses"][run.loss]
    assert "sweep" not in config
    with pytest.raises(ConfigError, match="not in the sweep"):
        run_by_id(params, "nonsense")


def test_schedule_is_dense_then_sparse() -> None:
    assert logged_steps(100, 10, 2, 25) == [0, 2, 4, 6, 8, 25, 50, 75, 100]
    assert logged_steps(7, 0, 1, 3) == [0, 3, 6, 7]
    params = validate_params({"train": {"steps": 100}, "schedule": {"dense_until": 10, "dense_every": 2, "every": 25, "snapshot_every": 2}})
    assert snapshot_steps(params) == [0, 4, 8, 50, 100]


def test_readme_lists_every_key() -> None:
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- params:start -->\n", "\n<!-- params:end -->"
    table = readme[readme.index(start) + len(start) : readme.index(end)]
    assert table == schema_reference(), "README.md's params reference is stale: paste `geomhead params-doc` between the markers"


def test_analysis_defaults_match_the_library() -> None:
    from geomhead.geometry import AnalysisSettings

    assert AnalysisSettings.from_dict(validate_params({})["analysis"]) == AnalysisSettings()


def test_curvature_defaults_match_the_library() -> None:
    import inspect

    from geomhead.curvature import curvature_of_run

    defaults = {k: v.default for k, v in inspect.signature(curvature_of_run).parameters.items() if v.default is not inspect.Parameter.empty}
    section = validate_params({})["curvature"]
    assert set(section) == set(defaults)
    for key, value in section.items():
        library = defaults[key]
        assert (list(library) if isinstance(library, tuple) else library) == value, key


def test_grids_add_runs() -> None:
    one = {"loss": ["vicreg"], "activation": ["relu"], "depth": [2], "batchnorm": [False], "init": ["normal"], "lr": [0.02], "seed": [0, 1]}
    runs = expand_runs(validate_params({"sweep": {"grid": None, "grids": [one, {**one, "lr": [0.05]}]}}))
    assert [r.id for r in runs] == [
        "vicreg-relu-d2-bn0-normal-lr0.02-s0",
        "vicreg-relu-d2-bn0-normal-lr0.02-s1",
        "vicreg-relu-d2-bn0-normal-lr0.05-s0",
        "vicreg-relu-d2-bn0-normal-lr0.05-s1",
    ]
    with pytest.raises(ConfigError, match=r"sweep.grids\[0\]"):
        validate_params({"sweep": {"grids": [{"loss": ["vicreg"]}]}})
