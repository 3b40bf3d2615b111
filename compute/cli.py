"""The command line: run, validate, info, check, aggregate, report.

    python -m compute run RUN.toml [--limit N] [--overwrite] [--shard I/N]
    python -m compute validate RUN.toml
    python -m compute info RUN.h5
    python -m compute check RUN.h5 [--samples N] [--model SIDE=PATH] [--adapter SIDE=PATH]
    python -m compute aggregate RUN.h5 [RUN.h5 ...]
    python -m compute report [--json] [--resamples B] [--seed S] RUN.h5 [RUN.h5 ...]

Exit statuses:
    0    ok
    1    `check` re-scored the artifact and found mismatches
    2    bad input or environment: one line `error: ...` on stderr, nothing left half-written
    3    an unexpected error (a bug in TDS): the traceback is printed
    130  interrupted (Ctrl-C or SIGTERM): finished batches are kept, the same command resumes

`main` is the one place where a user-facing fault (compute.core.errors.UserError)
becomes its one line.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import traceback
from typing import NoReturn

from compute.core.errors import EXIT_BAD_INPUT, EXIT_BUG, EXIT_INTERRUPTED, EXIT_MISMATCHES, EXIT_OK, UserError

INTERRUPTED = "interrupted: finished batches are kept; run the same command again to resume"


class OneLineParser(argparse.ArgumentParser):
    """argparse with the CLI's promise: a wrong argument is one line `error: ...` and exit status 2 (no usage)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {self.prog}: {' '.join(message.split())} (see {self.prog} --help)\n")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _side_path(text: str) -> tuple[str, str]:
    side, _, path = text.partition("=")
    if side not in ("aligned", "base") or not path:
        raise argparse.ArgumentTypeError("must be aligned=PATH or base=PATH")
    return side, path


TRAINING_STAGES = ("sft", "pairs", "dpo", "grpo")  # compute/train/<stage>.py, each with main(argv)


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="tds", description="Token distribution shift analysis.")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="score a pair of sides over a dataset and write its artifact (a control: five)")
    run.add_argument("config", help="the run's TOML config")
    run.add_argument("--limit", type=positive_int, help="only the first N examples of the dataset")
    run.add_argument("--overwrite", action="store_true", help="replace an existing artifact of that name")
    run.add_argument(
        "--shard",
        metavar="I/N",
        help="run only the I-th of N shares (I counts from 1) into the partial work, no artifact; "
        "the same command without --shard merges once all N are done",
    )
    validate = sub.add_parser("validate", help="check a config and its dataset without loading any model")
    validate.add_argument("config")
    info = sub.add_parser("info", help="check an artifact and show what it holds")
    info.add_argument("artifact")
    check = sub.add_parser("check", help="re-score sampled positions naively (loads the models) and compare")
    check.add_argument("artifact")
    check.add_argument("--samples", type=positive_int, default=12, help="positions to re-score (default 12)")
    check.add_argument(
        "--model",
        type=_side_path,
        action="append",
        default=[],
        metavar="SIDE=PATH",
        help="load that side's model from PATH (a local copy) instead of the name the artifact records",
    )
    check.add_argument(
        "--adapter",
        type=_side_path,
        action="append",
        default=[],
        metavar="SIDE=PATH",
        help="that side's adapter folder, where it is no longer at the place the artifact records (relative to the "
        "artifact's folder); it must be the adapter the run used (its content hash)",
    )
    aggregate = sub.add_parser(
        "aggregate", help="write the dashboard's per-run tables of older artifacts to RUN.aggregates.h5 beside each"
    )
    aggregate.add_argument("artifacts", nargs="+", metavar="artifact")
    report = sub.add_parser(
        "report", help="what runs show against the papers' claims (a markdown table; stage patterns for a chain)"
    )
    report.add_argument("artifacts", nargs="+", metavar="artifact")
    report.add_argument("--json", action="store_true", help="one JSON document instead (docs/report-json.md)")
    report.add_argument(
        "--resamples", type=positive_int, default=1000, help="bootstrap resamples of the examples (default 1000)"
    )
    report.add_argument("--seed", type=int, default=0, help="the bootstrap's seed (default 0)")
    train = sub.add_parser(
        "train",
        help="a TRL training stage on gemma-3-270m (docs/training.md): sft, pairs, dpo or grpo; its options follow",
        add_help=False,
    )
    train.add_argument("stage", choices=TRAINING_STAGES)
    train.add_argument("options", nargs=argparse.REMAINDER, help="the stage's own options (tds train STAGE --help)")
    return p


def validate(config_path: str) -> str:
    """Check a config, its dataset and its output place without loading a model (and without torch, unless a
    side names a device other than the CPU, which only torch can count)."""
    from compute.core.config import load_config
    from compute.core.inputs import output_paths, select_examples

    config = load_config(config_path)
    _warn(config)
    on_devices = [name for name, side in config.cells().items() if side.device not in ("cpu", "auto")]
    if on_devices:
        require_engine("validate", f"to check the device of [{on_devices[0]}]")
        from compute.engine.model import check_device

        for name in on_devices:
            check_device(name, config.cells()[name])
    examples = select_examples(config, None)
    given = sum(e.response is not None for e in examples)
    outs = list(output_paths(config).values())
    note = " (exists: run needs --overwrite)" if any(out.exists() for out in outs) else ""
    return (
        f"{config.path}: ok: {len(examples)} examples ({given} with answers, {len(examples) - given} to generate); "
        f"writes {', '.join(map(str, outs))}{note}"
    )


class _Interrupts:
    """While in use, SIGTERM interrupts like Ctrl-C, and either is remembered even if a finalizer swallowed it."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.seen = False
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt

    def __enter__(self) -> _Interrupts:
        self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over a file-size limit a write fails (one line), not the process
    with _Interrupts() as interrupts:
        try:
            status = _command(args)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            status = EXIT_BAD_INPUT
        except KeyboardInterrupt:
            status = EXIT_INTERRUPTED
        except BrokenPipeError:  # the reader of our output left (`| head`): stop quietly, as cat does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            status = EXIT_OK
        except Exception:
            traceback.print_exc()
            print("error: an unexpected error (a bug in TDS): please report the traceback above", file=sys.stderr)
            status = EXIT_BUG
    if interrupts.seen or status == EXIT_INTERRUPTED:
        print(INTERRUPTED if args.command == "run" else "interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return status


# What the engine (`run`, `check`) imports beyond the torch-free core, and how to install it.
ENGINE_PACKAGES = ("torch", "transformers", "peft", "accelerate")
ENGINE_INSTALL = "pip install -r requirements.txt (or pip install 'tds[compute]')"


def _train(stage: str, options: list[str]) -> None:
    """Hand over to a training stage's own command line (it says its faults in one line and exits)."""
    if importlib.util.find_spec("trl") is None:
        raise UserError("`tds train` needs TRL: pip install -r requirements-train.txt (or pip install 'tds[train]')")
    from compute.train import common

    module = importlib.import_module(f"compute.train.{stage}")
    common.run_main(lambda: module.main(options))


def require_engine(command: str, why: str = "") -> None:
    """Refuse, in one line, a command that needs torch where the install has only the torch-free core."""
    missing = [name for name in ENGINE_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"`tds {command}` needs the compute engine{' ' + why if why else ''} ({', '.join(missing)} not "
            f"installed here): {ENGINE_INSTALL}"
        )


def _command(args: argparse.Namespace) -> int:
    if args.command in ("run", "check", "train"):
        require_engine(args.command)
    if args.command == "train":
        _train(args.stage, args.options)
        return EXIT_OK
    if args.command == "validate":
        print(validate(args.config))
    elif args.command == "info":
        from compute.core.describe import describe

        print(describe(args.artifact))
    elif args.command == "check":
        return _check(args)
    elif args.command == "aggregate":
        _aggregate(args.artifacts)
    elif args.command == "report":
        _report(args)
    else:
        from compute.core.config import load_config
        from compute.core.shards import Shard
        from compute.engine.run import run

        config = load_config(args.config)
        _warn(config)
        shard = Shard.parse(args.shard) if args.shard is not None else None
        run(config, limit=args.limit, overwrite=args.overwrite, shard=shard)
    return EXIT_OK


def _report(args: argparse.Namespace) -> None:
    if args.json:
        import json

        from compute.core.findings import document

        print(json.dumps(document(args.artifacts, args.resamples, args.seed), indent=1, ensure_ascii=False))
    else:
        from compute.core.report import format_report

        print(format_report(args.artifacts, args.resamples, args.seed))


def _warn(config) -> None:
    from compute.core.config import config_warnings

    for warning in config_warnings(config):
        print(f"warning: {warning}", file=sys.stderr)


def _aggregate(paths: list[str]) -> None:
    from compute.core.aggregates import write_side_file

    for path in paths:
        written = write_side_file(path)
        print(f"{path}: wrote {written}" if written else f"{path}: holds its aggregates already; nothing written")


def _check(args: argparse.Namespace) -> int:
    from compute.core.artifact.branching_samples import has_branching
    from compute.core.artifact.reader import open_artifact
    from compute.engine.verify import load_side_models, sample_positions, sample_steps, verify, verify_branching

    artifact = open_artifact(args.artifact)
    positions = sample_positions(artifact, args.samples)
    models = load_side_models(artifact, paths=dict(args.model), adapter_paths=dict(args.adapter))
    mismatches = verify(artifact, positions, models=models)
    steps = sample_steps(artifact, args.samples) if has_branching(artifact) else []
    mismatches += verify_branching(artifact, steps, models=models)
    decoded = artifact.has("positions/source")
    if decoded:
        from compute.core.provenance import check_provenance

        mismatches += check_provenance(artifact)
    for mismatch in mismatches:
        print(f"mismatch: {mismatch}")
    verdict = "FAILED" if mismatches else "ok"
    sampled = f" and {len(steps)} sampled steps" if steps else ""
    provenance = f", the source of all {artifact.n_positions} positions checked against its rule" if decoded else ""
    print(
        f"{args.artifact}: {verdict}: {len(positions)} positions{sampled} re-scored naively{provenance}, "
        f"{len(mismatches)} mismatches"
    )
    return EXIT_MISMATCHES if mismatches else EXIT_OK
