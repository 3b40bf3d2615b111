"""The command line: run, validate, info.

    python -m compute run RUN.toml [--limit N] [--overwrite]
    python -m compute validate RUN.toml
    python -m compute info RUN.h5

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
        elif args.command == "info":
            from compute.run import describe

            print(describe(args.artifact))
        else:
            return _run(args)
    except USER_ERRORS as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


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
