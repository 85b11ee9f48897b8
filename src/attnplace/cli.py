"""`attnplace` command line: list | fit | grid | report | compare | atlas | hardware.

User mistakes (`UserError`) print one line and exit with status 2; anything else is a bug and keeps its traceback.
"""

import argparse
import json
import shlex
import signal
import sys
from pathlib import Path

from .errors import UserError
from .terminal import say, wrap_line


def cmd_list(args: argparse.Namespace) -> int:
    from .models import ATTENTION, BACKBONES, PATTERNS, build_model, count_flops, count_params

    ATTENTION.get(args.attention)  # a typo fails before the long table starts
    width = max(10, *map(len, BACKBONES.names()))
    for title, registry in (("backbones", BACKBONES), ("patterns", PATTERNS), ("attention types", ATTENTION)):
        print(f"{title}:")
        for name, doc in registry.describe().items():
            print(f"  {name:<{width}} {doc}")
        if registry is BACKBONES:
            print(f"  {'lib:NAME':<{width}} torchvision:NAME or timm:NAME, a library ResNet converted in place "
                  "(attnplace.convert; model.weights: a local state_dict)")
        print()
    print(f"parameters / forward FLOPs at {args.image_size}x{args.image_size}, attention={args.attention}, "
          f"{args.num_classes} classes (FLOPs as torch.utils.flop_counter counts them: 2 per multiply-add)")
    patterns = PATTERNS.names()
    print(f"  {'backbone':<{width}}" + "".join(f"{p:>22}" for p in patterns))
    for backbone in BACKBONES.names():
        cells = []
        for pattern in patterns:
            model = build_model(backbone, pattern, args.attention, num_classes=args.num_classes)
            flops = count_flops(model, 3, args.image_size)
            cells.append(f"{count_params(model):>10,} {flops / 1e6:>9.2f}M")
        print(f"  {backbone:<{width}}" + "".join(f"{c:>22}" for c in cells), flush=True)
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from .run.config import load_config
    from .train.fit import fit, summary_line

    path, overrides = args.config, list(args.overrides)
    if path and "=" in path:  # `attnplace fit model.pattern=p4`: no config file, only overrides
        path, overrides = None, [path, *overrides]
    elif path and not Path(path).exists() and Path(path).suffix not in (".yaml", ".yml"):  # a key without =value
        raise UserError(f"{path!r} is neither a config file (.yaml) nor key=value (e.g. model.pattern=p4)")
    record = fit(load_config(path, overrides))
    say(summary_line(record))
    return 0 if record["status"] == "completed" else 1


def cmd_grid(args: argparse.Namespace) -> int:
    from .grid.seed_blocks import schedule
    from .grid.runner import auto_workers, dry_run_table, hardware_here_of, run_grid
    from .grid.spec import load_grid
    from .report.console import report
    from .report.records import NoCompleteBlock

    grid = load_grid(args.grid, args.overrides)
    if args.dry_run:
        here = hardware_here_of(grid, args.launcher, args.allow_mixed_environments, args.address)
        print("\n".join([*map(wrap_line, grid.notes), dry_run_table(schedule(grid, here, args.retry_failed))]))
        return 0
    workers = auto_workers() if args.workers == "auto" else args.workers
    counts = run_grid(grid, launcher=args.launcher, workers=workers, retry_failed=args.retry_failed,
                      address=args.address, gpus_per_run=args.gpus_per_run, cpus_per_run=args.cpus_per_run,
                      allow_mixed_environments=args.allow_mixed_environments,
                      allow_emulated_bf16=args.allow_emulated_bf16, command=args.command)
    try:
        report(grid.results_dir, wandb=any(r.config.logger == "wandb" for r in grid.runs),
               allow_mixed_environments=args.allow_mixed_environments)
    except NoCompleteBlock as note:  # a grid stopped early: no table yet, which is no mistake of the user's
        say(f"no table yet: {note}")
    elsewhere = f", {counts['elsewhere']} being trained by another call" if counts["elsewhere"] else ""
    retry = " (rerun with --retry-failed)" if counts["failed"] else ""
    say(f"grid {grid.name}: {counts['completed']}/{counts['runs']} runs completed, {counts['failed']} failed"
        f"{retry}{elsewhere}; results in {grid.results_dir}")
    return 1 if counts["failed"] or counts["completed"] + counts["elsewhere"] < counts["runs"] else 0


def cmd_report(args: argparse.Namespace) -> int:
    from .report.console import report

    report(args.results_dir, wandb=args.wandb, wide=args.wide, allow_mixed_environments=args.allow_mixed_environments,
           baseline=args.baseline, metric=args.metric, equivalence_margin=args.equivalence_margin,
           within=tuple(args.within) if args.within else None,
           factorial=tuple(args.factorial) if args.factorial else None, contrast=args.contrast, tune=args.tune,
           choose_on=args.choose_on)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """Two studies cell by cell (report/across.py), then each one's seed blocks (with their hardware) and omnibus
    lines."""
    from .report.across import across_studies, format_across
    from .report.build import build_report
    from .report.tables import omnibus_lines

    a, b = (build_report(study, baseline=args.baseline, metric=args.metric) for study in (args.study_a, args.study_b))
    name_a, name_b = Path(args.study_a).name, Path(args.study_b).name
    print(format_across(across_studies(a, b, args.match), name_a, name_b))
    for name, report in ((name_a, a), (name_b, b)):
        say(f"\n{name} ({report.settings.metric}):")
        for line in [*report.block_notes, *omnibus_lines(report.omnibus)]:
            say(f"- {line}")
    return 0


def cmd_atlas(args: argparse.Namespace) -> int:
    """Every study under a results root on one page: RESULTS_ROOT/atlas.md and atlas.png."""
    from .report.atlas_page import omnibus_line, write_atlas

    atlas, written = write_atlas(args.results_root)
    for row in atlas.rows.itertuples(index=False):
        say(omnibus_line(row))
    for study in atlas.left_out.itertuples(index=False):
        say(f"left out: {study.study}: {study.reason}")
    say(f"atlas: {len(atlas.rows)} rows from {atlas.rows['study'].nunique()} studies; "
          f"{', '.join(Path(p).name for p in written)} in {args.results_root}")
    return 0


def cmd_hardware(args: argparse.Namespace) -> int:
    """This machine's hardware kind, and the `--resources` by which its Ray node declares it (docs/grids.md, "On a
    cluster"): a seed block trains on one kind, and on a cluster the declared kind places its runs."""
    import torch

    from .run.environment import DECLARED_AMOUNT, hardware_here, hardware_resource
    from .run.sections import TrainerConfig

    device = args.device or TrainerConfig().device()
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda but no CUDA GPU is visible here")
    kind = hardware_here(device)
    resources = "--resources=" + shlex.quote(json.dumps({hardware_resource(kind): DECLARED_AMOUNT}))
    print(f"hardware kind of {device} runs here: {kind}")
    print("declare it when this machine's Ray node starts, e.g.")
    print(f"  ray start --address=HEAD_IP:6379 {resources}")
    return 0


def seeds_arg(text: str) -> tuple[int, ...]:
    """`--choose-on`: seeds, comma-separated (0,1,2)."""
    seeds = [s.strip() for s in text.split(",")]
    if not all(s.isdigit() for s in seeds):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of seeds, e.g. 0,1,2")
    return tuple(int(s) for s in seeds)


def workers_arg(text: str) -> int | str:
    """`--workers`: a positive integer, or `auto` (`grid.runner.auto_workers`)."""
    if text == "auto":
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer or auto")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnplace", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered backbones, patterns and attention types, with params and FLOPs")
    p.add_argument("--attention", default="se", help="attention type used for the params/FLOPs table")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=10)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("fit", help="train one variant: fit [CONFIG.yaml] [key=value ...]")
    p.add_argument("config", nargs="?", help="YAML config (same schema as a grid's `base`); optional")
    p.add_argument("overrides", nargs="*", help="dotted overrides, e.g. model.pattern=p4 optim.lr=0.05")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("grid", help="run a grid file's runs (resumable) and report: grid GRID.yaml [key=value ...]")
    p.add_argument("grid", help="grid YAML: name, base, axes, exclude")
    p.add_argument("overrides", nargs="*", help="dotted overrides applied to the base config of every run")
    p.add_argument("--launcher", choices=["local", "ray"], default="local")
    p.add_argument("--workers", type=workers_arg, default=1,
                   help="runs at once (local worker processes or local Ray CPUs); auto: 4 per GPU (benchmarks/gpu.sh "
                        "measures which count is best there), else one per CPU core, at most 8")
    p.add_argument("--dry-run", action="store_true", help="print the run table (ids, status, axes) and stop")
    p.add_argument("--retry-failed", action="store_true", help="run again the runs recorded as failed")
    p.add_argument("--address", help="ray: address of an existing cluster (default: start a local Ray)")
    p.add_argument("--gpus-per-run", type=float, default=0.0, help="ray: GPUs per run, fractions pack runs")
    p.add_argument("--cpus-per-run", type=float, default=1.0, help="ray: CPUs per run")
    p.add_argument("--allow-mixed-environments", action="store_true",
                   help="train runs on other hardware than the grid's completed runs, and report them together")
    p.add_argument("--allow-emulated-bf16", action="store_true",
                   help="train a bf16 grid on a CPU without native bf16 (AVX512-BF16 or AMX), at about a tenth of "
                        "fp32's speed")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("report", help="tables, plots and statistics of a results directory")
    p.add_argument("results_dir")
    p.add_argument("--wandb", action="store_true", help="also log the tables and plots as a W&B summary run")
    p.add_argument("--wide", action="store_true", help="print every column of summary.csv (the default table fits "
                                                         "120 columns)")
    _baseline_and_metric(p)
    p.add_argument("--equivalence-margin", type=float, metavar="PP",
                   help="TOST margin in percentage points (default: the grid's report.equivalence_margin, else 0.5)")
    p.add_argument("--within", action="append", metavar="AXIS",
                   help="a placement axis (e.g. model.gate): run the omnibus test again within each of its values, "
                        "with the baseline; repeatable (default: the grid's report.within)")
    p.add_argument("--factorial", action="append", metavar="AXIS",
                   help="placement axes that cross (e.g. --factorial model.pattern --factorial model.gate): a "
                        "factorial repeated-measures ANOVA of their main effects and interaction "
                        "(default: the grid's report.factorial)")
    p.add_argument("--contrast", metavar="AXIS=BEFORE,AFTER",
                   help="a non-placement axis and two of its values (e.g. optim.lr=0.1,0.2): each variant and each "
                        "placement's gap to its baseline, AFTER against BEFORE, paired by seed "
                        "(default: the grid's report.contrast)")
    p.add_argument("--tune", metavar="AXIS",
                   help="a non-placement axis (e.g. optim.lr): each variant at its own value, chosen on the "
                        "--choose-on blocks' validation accuracy, compared on the other blocks' test accuracy "
                        "(default: the grid's report.tune)")
    p.add_argument("--choose-on", type=seeds_arg, metavar="SEEDS",
                   help="the seed blocks that choose, e.g. 0,1,2 (default: the grid's report.choose_on)")
    p.add_argument("--allow-mixed-environments", action="store_true",
                   help="report runs of different device types, hardware (GPU or CPU model), precisions or "
                        "compile settings together")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="two studies cell by cell: each one's Δ against its own baseline, and "
                                       "their difference with a Welch CI")
    p.add_argument("study_a")
    p.add_argument("study_b")
    _baseline_and_metric(p)
    p.add_argument("--match", metavar="variant|cell",
                   help="pair the studies' rows by variant label (default), or by where × how cell (p2 × mask), "
                        "e.g. to compare two attention types")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("atlas", help="every study under a results root on one page: atlas.md and atlas.png")
    p.add_argument("results_root", help="the folder whose subfolders with runs/ are the studies (e.g. results)")
    p.set_defaults(func=cmd_atlas)

    p = sub.add_parser("hardware", help="this machine's hardware kind and the `ray start --resources` that declares it")
    p.add_argument("--device", choices=["cpu", "cuda"], help="the kind of runs on this device (default: where a run "
                                                             "with trainer.accelerator=auto trains here)")
    p.set_defaults(func=cmd_hardware)
    return parser


def _baseline_and_metric(p: argparse.ArgumentParser) -> None:
    """The options `report` and `compare` share: what each variant is compared with, and on which split."""
    p.add_argument("--baseline", metavar="VARIANT",
                   help="the variant each group is compared with, by label (default: the grid's report.baseline, "
                        "else pattern none)")
    p.add_argument("--metric", metavar="test_acc|val_acc",
                   help="val_acc (the final epoch's validation accuracy) to explore, test_acc to confirm "
                        "(default: the grid's report.metric, else test_acc)")


def main(argv: list[str] | None = None) -> int:
    from .quiet import quiet_libraries

    quiet_libraries()
    interruptible()
    parser = build_parser()
    # Overrides may come after flags (`grid G.yaml --workers 2 seed=1`), which plain nargs="*" rejects.
    args, extra = parser.parse_known_args(argv)
    stray = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    args.command = shlex.join(["attnplace", *(sys.argv[1:] if argv is None else argv)])  # as calls.jsonl shows it
    try:
        return args.func(args)
    except UserError as err:
        print(f"attnplace: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnplace: interrupted", file=sys.stderr)
        return 130


def interruptible() -> None:
    """Stop on SIGINT however this process was started. A job that a non-interactive shell starts in the
    background (`cmd &` in a script, nohup) inherits SIGINT ignored, and Python then installs no
    KeyboardInterrupt handler: a time limit's SIGINT (`timeout -s INT`) would do nothing, and a grid would
    leave no `interrupted` line in calls.jsonl. Workers run in their own process group, so a terminal's
    Ctrl-C still reaches only the grid."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


if __name__ == "__main__":
    sys.exit(main())
