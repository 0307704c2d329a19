"""Command line: ``geomhead validate|runs|params-doc|pretrain``.

The pipeline runs through Snakemake; this CLI serves checks and single runs outside it.
"""

from __future__ import annotations

import argparse
import sys

from geomhead.config import ConfigError, expand_runs, load_params, run_config, schema_reference


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="geomhead", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_val = sub.add_parser("validate", help="validate a params file (exit 1 with one message per problem)")
    p_val.add_argument("params", nargs="?", default="params.yaml")
    p_runs = sub.add_parser("runs", help="list the run ids of the sweep")
    p_runs.add_argument("params", nargs="?", default="params.yaml")
    sub.add_parser("params-doc", help="print the markdown reference of every params.yaml key")
    p_pre = sub.add_parser("pretrain", help="train one run of the sweep (resumable)")
    p_pre.add_argument("--params", default="params.yaml")
    p_pre.add_argument("--run", required=True, help="run id (see `geomhead runs`)")
    p_pre.add_argument("--data", required=True, help="prepared dataset .npz")
    p_pre.add_argument("--out", required=True, help="output folder (model.pt, snapshots/, dynamics.nc)")
    p_pre.add_argument("--resume-dir", required=True, help="folder for resumable checkpoints")
    p_pre.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        if args.command == "params-doc":
            print(schema_reference())
        elif args.command == "validate":
            params = load_params(args.params)
            print(f"{args.params}: valid, {len(expand_runs(params))} runs")
        elif args.command == "runs":
            print("\n".join(r.id for r in expand_runs(load_params(args.params))))
        elif args.command == "pretrain":
            from geomhead.train import RunPaths, pretrain

            config = run_config(load_params(args.params), args.run)
            pretrain(config, args.data, RunPaths.under(args.out, args.resume_dir), threads=args.threads)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
