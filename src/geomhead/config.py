"""params.yaml: schema validation with defaults, the sweep, run ids and per-run configs.

One file configures Snakemake (``configfile:``) and DVC (``params:``). It is validated against
``schema/params.schema.yaml`` (JSON Schema 2020-12, ``additionalProperties: false`` everywhere,
a default and a description for every key) whether it is loaded by the workflow or by the
library, and every problem is reported as one :class:`ConfigError` whose message names the key,
the value and what is allowed.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_FILE = "params.schema.yaml"
SWEEP_KEYS = ("loss", "activation", "depth", "batchnorm", "init", "lr", "seed")


class ConfigError(ValueError):
    """An invalid params.yaml: the message names each bad key, its value and what is allowed."""


@cache
def load_schema() -> dict[str, Any]:
    """The params.yaml JSON schema shipped with the package."""
    text = resources.files("geomhead.schema").joinpath(SCHEMA_FILE).read_text()
    return yaml.safe_load(text)


def _with_defaults(validator_class: type) -> type:
    """Extend a jsonschema validator so that ``properties`` fills in ``default`` values."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator: Any, properties: dict, instance: Any, schema: dict) -> Iterator:
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft202012Validator)


def _key(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


def _subschema(path: Any) -> dict[str, Any]:
    """The schema node describing the instance at ``path`` (best effort, for messages)."""
    node = load_schema()
    for part in path:
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
    return node


def _describe(error: jsonschema.ValidationError) -> str:
    """One line per schema violation: key, value, what is allowed."""
    key, value, kind = _key(error.absolute_path), error.instance, error.validator
    if kind == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(value) - set(allowed))
        lines = []
        for name in extra:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            where = f"{key}.{name}" if error.absolute_path else name
            lines.append(f"{where}: unknown key{hint}; allowed keys here: {', '.join(allowed)}")
        return "\n".join(lines)
    if kind == "enum":
        return f"{key}: {value!r} is not allowed; allowed values: {', '.join(map(repr, error.validator_value))}"
    if kind == "type":
        return f"{key}: {value!r} has the wrong type; expected {error.validator_value}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {
            "minimum": ">=",
            "maximum": "<=",
            "exclusiveMinimum": ">",
            "exclusiveMaximum": "<",
        }
        return f"{key}: {value!r} is out of range; must be {words[kind]} {error.validator_value}"
    if kind == "required":
        return f"{key}: {error.message}; each entry needs all of: {', '.join(error.validator_value)}"
    if kind in ("minItems", "maxItems"):
        return f"{key}: {value!r} must have {'at least' if kind == 'minItems' else 'at most'} {error.validator_value} items"
    if kind == "uniqueItems":
        return f"{key}: {value!r} has repeated items"
    desc = _subschema(error.absolute_path).get("description", "")
    return f"{key}: {value!r}: {error.message}" + (f" ({desc})" if desc else "")


def _leaf_errors(errors: Iterator[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    """Flatten ``anyOf``/``type: [a, b]`` contexts to the most specific errors."""
    out: list[jsonschema.ValidationError] = []
    for err in errors:
        out.extend(_leaf_errors(iter(err.context)) if err.context else [err])
    return out


def _semantic_errors(params: Mapping[str, Any]) -> list[str]:
    """Checks that JSON Schema cannot express (cross-key constraints)."""
    errors = []
    for name in ("scale", "brightness", "contrast", "crop_scale", "crop_ratio"):
        lo, hi = params["augment"][name]
        if lo > hi:
            errors.append(f"augment.{name}: [{lo}, {hi}] must be [low, high] with low <= high")
    model = params["model"]
    if model["backbone"] == "resnet18" and model["z_dim"] != 512:
        errors.append(f"model.z_dim: {model['z_dim']} does not fit backbone resnet18; its z has 512 dimensions")
    dataset = params["data"]["dataset"]
    if dataset == "digits" and model["backbone"] == "resnet18":
        errors.append("model.backbone: 'resnet18' needs 32x32 RGB images; with data.dataset 'digits' use mlp, resnet_small or vit_small")
    if model["backbone"] == "vit_small" and model["z_dim"] % 4 and model["z_dim"] % 3:
        errors.append(f"model.z_dim: {model['z_dim']} must be divisible by 3 or 4 (ViT attention heads) for backbone vit_small")
    if not expand_runs(params):
        errors.append("sweep: no runs; give sweep.grid, sweep.grids or at least one sweep.include entry")
    return errors


def validate_params(raw: Mapping[str, Any] | None, source: str = "params.yaml") -> dict[str, Any]:
    """Validate params against the schema and return a resolved copy with every default filled in.

    Args:
        raw: the parsed YAML (``None`` for an empty file).
        source: name used in error messages.

    Raises:
        ConfigError: listing every problem, one per line.
    """
    params = copy.deepcopy(dict(raw or {}))
    errors = sorted(_leaf_errors(_Validator(load_schema()).iter_errors(params)), key=lambda e: list(map(str, e.absolute_path)))
    lines = [_describe(e) for e in errors]
    if not lines:
        lines = _semantic_errors(params)
    if lines:
        raise ConfigError(f"{source} is invalid:\n" + "\n".join(f"  {line}" for line in lines))
    return params


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    """Read (``yaml.safe_load``) and validate a params file; see :func:`validate_params`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return validate_params(raw, source=str(path))


def format_lr(lr: float) -> str:
    """Shortest faithful text of a learning rate for run ids (0.05 -> '0.05', 1e-4 -> '0.0001')."""
    text = repr(float(lr))
    return text[:-2] if text.endswith(".0") else text


@dataclass(frozen=True, order=True)
class Run:
    """One pretraining run: a point of the sweep."""

    loss: str
    activation: str
    depth: int
    batchnorm: bool
    init: str
    lr: float
    seed: int

    @property
    def id(self) -> str:
        """Readable, stable id, e.g. ``simsiam-swish-d2-bn0-collapsed-lr0.05-s0``."""
        return f"{self.loss}-{self.activation}-d{self.depth}-bn{int(self.batchnorm)}-{self.init}-lr{format_lr(self.lr)}-s{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        """The seven sweep keys as plain values."""
        return asdict(self)


def expand_runs(params: Mapping[str, Any]) -> list[Run]:
    """All runs of the sweep: the grid product, each of ``grids``, then the ``include`` list, duplicates dropped.

    Order is stable: grid runs in product order (keys in :data:`SWEEP_KEYS` order), then includes.
    """
    sweep = params.get("sweep", {})
    combos: list[dict[str, Any]] = []
    for grid in [sweep.get("grid"), *(sweep.get("grids") or [])]:
        if grid:
            combos += [dict(zip(SWEEP_KEYS, values, strict=True)) for values in itertools.product(*(grid[k] for k in SWEEP_KEYS))]
    combos += list(sweep.get("include") or [])
    runs: dict[str, Run] = {}
    for combo in combos:
        run = Run(
            loss=combo["loss"],
            activation=combo["activation"],
            depth=int(combo["depth"]),
            batchnorm=bool(combo["batchnorm"]),
            init=combo["init"],
            lr=float(combo["lr"]),
            seed=int(combo["seed"]),
        )
        runs.setdefault(run.id, run)
    return list(runs.values())


def run_by_id(params: Mapping[str, Any], run_id: str) -> Run:
    """The run with this id; ConfigError naming the known ids otherwise."""
    for run in expand_runs(params):
        if run.id == run_id:
            return run
    known = [r.id for r in expand_runs(params)]
    close = difflib.get_close_matches(run_id, known, n=3)
    raise ConfigError(f"run {run_id!r} is not in the sweep" + (f"; close: {', '.join(close)}" if close else ""))


def run_config(params: Mapping[str, Any], run_id: str) -> dict[str, Any]:
    """Everything one pretraining run depends on, and nothing else (so that Snakemake's
    ``params`` rerun trigger reruns exactly the runs whose settings changed)."""
    run = run_by_id(params, run_id)
    return {
        "run": {"id": run.id, **run.as_dict()},
        "data": dict(params["data"]),
        "augment": dict(params["augment"]),
        "model": dict(params["model"]),
        "loss_settings": dict(params["losses"][run.loss]),
        "train": dict(params["train"]),
        "schedule": dict(params["schedule"]),
        "tracking": dict(params["tracking"]),
    }


def config_json(config: Mapping[str, Any]) -> str:
    """Canonical JSON text of a config (sorted keys), as stored in netCDF attributes."""
    return json.dumps(config, sort_keys=True)


def logged_steps(steps: int, dense_until: int, dense_every: int, every: int) -> list[int]:
    """Steps at which dynamics are logged: dense at the start, then sparse; 0 and ``steps`` included.

    Step ``t`` means "after ``t`` optimiser updates": metrics logged at ``t`` are measured on the
    forward pass of update ``t + 1`` (the paper's convention), and step ``steps`` is the final state.
    """
    out = set(range(0, min(dense_until, steps), dense_every))
    start = ((dense_until + every - 1) // every) * every if dense_until else 0
    out.update(range(start, steps, every))
    out.update({0, steps})
    return sorted(out)


def snapshot_steps(params: Mapping[str, Any]) -> list[int]:
    """Steps at which snapshots (head weights + tracking-batch representations) are saved."""
    sched, steps = params["schedule"], params["train"]["steps"]
    logged = logged_steps(steps, sched["dense_until"], sched["dense_every"], sched["every"])
    keep = logged[:: sched["snapshot_every"]]
    if keep[-1] != steps:
        keep.append(steps)
    return keep


def schema_reference() -> str:
    """Markdown reference of every params.yaml key, generated from the schema (kept in README.md)."""
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]

    def walk(node: Mapping[str, Any], prefix: str) -> None:
        for name, sub in node.get("properties", {}).items():
            key = f"{prefix}{name}"
            kind = sub.get("type", "")
            kind = " or ".join(kind) if isinstance(kind, list) else kind
            if "enum" in sub:
                kind = " \\| ".join(map(str, sub["enum"]))
            elif sub.get("items", {}).get("enum"):
                kind = "list of " + " \\| ".join(map(str, sub["items"]["enum"]))
            default = sub.get("default", "required")
            if sub.get("type") == "object" and sub.get("properties"):
                default = ""
            shown = json.dumps(default) if default != "" else ""
            lines.append(f"| `{key}` | {kind} | {shown} | {' '.join(sub.get('description', '').split())} |")
            if sub.get("properties"):
                walk(sub, key + ".")
            if sub.get("items", {}).get("properties"):
                walk(sub["items"], key + "[].")

    walk(load_schema(), "")
    return "\n".join(lines)
