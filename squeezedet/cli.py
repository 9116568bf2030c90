"""The ``squeezedet`` command: one verb per stage, each registered by the module that owns it.

Every verb is a module of squeezedet.commands; the library layers below never import one.

Verbs import their heavy dependencies (TensorFlow, matplotlib) only when they run, so ``--help`` and the
numpy-only verbs (kitti-eval, anchors) start fast. A SqueezeDetError is printed as one line, exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from squeezedet import __version__
from squeezedet.errors import SqueezeDetError

# Modules exposing ``register(subparsers)``; each adds its verbs with ``set_defaults(func=...)``.
COMMAND_MODULES = (
    "squeezedet.commands.train",
    "squeezedet.commands.predict",
    "squeezedet.commands.anchors",
    "squeezedet.commands.augment_preview",
    "squeezedet.commands.val",
    "squeezedet.commands.kitti_eval",
    "squeezedet.commands.export",
    "squeezedet.commands.import_weights",
    "squeezedet.commands.prune",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="squeezedet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"squeezedet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.startswith(name.rsplit(".", 1)[0]):
                continue  # verb not installed in this build
            raise
        mod.register(sub)
    return parser


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose)
    try:
        rc = args.func(args)
    except SqueezeDetError as exc:
        print(f"squeezedet {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"squeezedet {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
