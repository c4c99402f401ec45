"""The `fetalcns` command. Each area of the package registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from app.logsafe import install_private_logging

# Modules exposing `register(subparsers)`. Imported lazily per command so that,
# for example, `fetalcns serve` never imports torch.
COMMAND_MODULES: dict[str, str] = {
    "synth": "app.synth.cli",
    "train": "app.training.cli",
    "export": "app.training.export_cli",
    "evaluate": "app.evaluation.cli",
    "predict": "app.inference.cli",
    "calibrate-ood": "app.inference.ood_cli",
    "calibrate-temperature": "app.inference.temperature_cli",
    "serve": "app.web.cli",
    "db": "app.web.cli",
    "users": "app.web.cli",
    "demo-data": "app.web.cli",
    "worker": "app.web.worker_cli",
    "backup": "app.web.backup_cli",
    "restore": "app.web.backup_cli",
    "dicom-listener": "app.web.dicom.cli",
}


def package_version() -> str:
    """The one version string: the installed distribution's metadata (pyproject.toml)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("fetalcns")
    except PackageNotFoundError:  # imported from a checkout that was never installed
        return "0+unknown"


def build_parser(command: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fetalcns", description=__doc__)
    parser.add_argument("--version", action="version", version=f"fetalcns {package_version()}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    registered: set[str] = set()
    for module_name in modules:
        if module_name in registered:
            continue
        registered.add(module_name)
        importlib.import_module(module_name).register(subparsers)
    return parser


def _first_command(argv: Sequence[str]) -> str | None:
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_first_command(args_list))
    args = parser.parse_args(args_list)
    # The exact command line, for commands that record how their output was made (synth).
    args.command_line = ["fetalcns", *args_list]
    install_private_logging(logging.DEBUG if args.verbose else logging.INFO)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
