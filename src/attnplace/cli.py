"""`attnplace` command line: list | fit | grid | report.

User mistakes (`UserError`) print one line and exit with status 2; anything else is a bug and keeps its traceback.
"""

import argparse
import sys

from .errors import UserError


def cmd_list(args: argparse.Namespace) -> int:
    from .models import ATTENTION, BACKBONES, PATTERNS, build_model, count_flops, count_params

    ATTENTION.get(args.attention)  # a typo fails before the long table starts
    for title, registry in (("backbones", BACKBONES), ("patterns", PATTERNS), ("attention types", ATTENTION)):
        print(f"{title}:")
        for name, doc in registry.describe().items():
            print(f"  {name:<10} {doc}")
        print()
    print(f"parameters / forward FLOPs at {args.image_size}x{args.image_size}, attention={args.attention}, "
          f"{args.num_classes} classes (FLOPs as torch.utils.flop_counter counts them: 2 per multiply-add)")
    patterns = PATTERNS.names()
    print(f"  {'backbone':<10}" + "".join(f"{p:>22}" for p in patterns))
    for backbone in BACKBONES.names():
        cells = []
        for pattern in patterns:
            model = build_model(backbone, pattern, args.attention, num_classes=args.num_classes)
            flops = count_flops(model, 3, args.image_size)
            cells.append(f"{count_params(model):>10,} {flops / 1e6:>9.2f}M")
        print(f"  {backbone:<10}" + "".join(f"{c:>22}" for c in cells), flush=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnplace", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="registered backbones, patterns and attention types, with params and FLOPs")
    p.add_argument("--attention", default="se", help="attention type used for the params/FLOPs table")
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--num-classes", type=int, default=10)
    p.set_defaults(func=cmd_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as err:
        print(f"attnplace: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("attnplace: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
