"""``plot``: the case's DXA T- and Z-scores per site over time, as SVG or PNG.

From a case file (or ``-``), or straight from a server (``--server URL --patient ID``: pulled
and mapped first). Needs the ``plot`` extra (``pip install 'fhir-plao[plot]'``); without it the
command says so and exits 2.
"""

from __future__ import annotations

import argparse
from typing import Any, Literal

from fhir_plao.cli._exit import ExitCode
from fhir_plao.cli._io import STDIN, read_case, say
from fhir_plao.cli._server import add_server_options, connected
from fhir_plao.errors import InputError

__all__ = ["register"]


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    plot = sub.add_parser(
        "plot",
        parents=[common],
        help="draw the DXA T- and Z-scores per site over time (SVG or PNG)",
        description="Draw a case's DXA T- and Z-scores per site over time, with the -1.0 and "
        "-2.5 bands marked, as SVG or PNG (by the output's suffix; --image-format for -). "
        "The case comes from a file, or from a server with --server and --patient. Needs "
        "the plot extra: pip install 'fhir-plao[plot]'.",
    )
    plot.add_argument("case", nargs="?", help="case file, or - for standard input")
    plot.add_argument("-o", "--output", required=True, help="BMD.svg or BMD.png, or - (stdout)")
    plot.add_argument(
        "--image-format",
        choices=("svg", "png"),
        default=None,
        help="svg or png (default: by suffix; svg for -)",
    )
    plot.add_argument("--patient", metavar="ID", help="with --server: the server's Patient id")
    plot.add_argument("--title", help="the picture's title")
    add_server_options(plot, required=False)
    plot.set_defaults(func=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    from fhir_plao.plot import plot_scores

    if (args.case is None) == (args.patient is None):
        raise InputError("give a case file, or --server URL --patient ID", location="arguments")
    if args.patient is not None:
        with connected(args) as fhir:
            case = fhir.pull(args.patient).case
    else:
        case = read_case(args.case)
    image_format: Literal["svg", "png"] | None = args.image_format or (
        "svg" if args.output == STDIN else None
    )
    if args.output == STDIN:
        import sys

        plotted = plot_scores(case, sys.stdout.buffer, image_format=image_format, title=args.title)
        sys.stdout.buffer.flush()
        say(f"plotted {plotted} scores", to_stderr=True)
        return ExitCode.OK
    plotted = plot_scores(case, args.output, image_format=image_format, title=args.title)
    say(f"wrote {args.output}: {plotted} scores plotted")
    return ExitCode.OK
