"""The command line: run, validate, info.

    python -m compute run RUN.toml [--limit N] [--overwrite]
    python -m compute validate RUN.toml
    python -m compute info RUN.h5
    python -m compute check RUN.h5 [--samples N]

Every error a user can cause is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from compute.artifact import ArtifactError
from compute.config import ConfigError, load_config
from compute.datasets import DatasetError
from compute.packaged import PackageError

USER_ERRORS: tuple[type[Exception], ...] = (ArtifactError, ConfigError, DatasetError, PackageError)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m compute", description="Token distribution shift analysis.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="score a pair of sides over a dataset and write one artifact")
    run.add_argument("config", help="the run's TOML config")
    run.add_argument("--limit", type=_positive_int, help="only the first N examples of the dataset")
    run.add_argument("--overwrite", action="store_true", help="replace an existing artifact of that name")
    validate = sub.add_parser("validate", help="check a config and its dataset without loading any model")
    validate.add_argument("config")
    info = sub.add_parser("info", help="check an artifact and show what it holds")
    info.add_argument("artifact")
    check = sub.add_parser("check", help="re-score sampled positions naively (loads the models) and compare")
    check.add_argument("artifact")
    check.add_argument("--samples", type=_positive_int, default=12, help="positions to re-score (default 12)")
    return p


def validate(config_path: str) -> str:
    from compute.run import output_path, select_examples

    config = load_config(config_path)
    examples = select_examples(config, None)
    given = sum(e.response is not None for e in examples)
    out = output_path(config)
    note = " (exists: run needs --overwrite)" if out.exists() else ""
    return (
        f"{config.path}: ok: {len(examples)} examples ({given} with answers, {len(examples) - given} to generate); "
        f"writes {out}{note}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "validate":
            print(validate(args.config))
        elif args.command == "check":
            return _check(args)
        elif args.command == "info":
            from compute.run import describe

            print(describe(args.artifact))
        else:
            return _run(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _check(args: argparse.Namespace) -> int:
    from compute.artifact import open_artifact
    from compute.model import SideError
    from compute.verify import sample_positions, verify

    artifact = open_artifact(args.artifact)
    positions = sample_positions(artifact, args.samples)
    try:
        mismatches = verify(artifact, positions)
    except SideError as err:
        print(f"error: {args.artifact}: {err}", file=sys.stderr)
        return 2
    for mismatch in mismatches:
        print(f"mismatch: {mismatch}")
    verdict = "FAILED" if mismatches else "ok"
    print(f"{args.artifact}: {verdict}: {len(positions)} positions re-scored naively, {len(mismatches)} mismatches")
    return 1 if mismatches else 0


def _run(args: argparse.Namespace) -> int:
    from compute.run import RunError, run
    from compute.score import ScoringError
    from compute.sides import SideError

    try:
        config = load_config(args.config)
        run(config, limit=args.limit, overwrite=args.overwrite)
    except (*USER_ERRORS, RunError, ScoringError, SideError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished batches are kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
