"""``digimask evaluate``: privacy attacks and clinical-fidelity checks of the maskers on a photo corpus."""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="compare the digital mask with baseline maskers on a folder of face photos",
        description="Run re-identification attacks and measurement-fidelity checks for each masker on "
        "CORPUS_DIR (one sub-folder per identity, or manifest.csv with path,identity) and write "
        "REPORT_DIR/results.json and REPORT_DIR/report.md with its pictures.",
    )
    p.add_argument("corpus", type=Path, metavar="CORPUS_DIR")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="REPORT_DIR")
    p.add_argument(
        "--maskers", nargs="+", metavar="SPEC",
        help="maskers to compare, NAME or NAME:key=value,... (default: the digital mask, blur at three "
        "strengths, pixelate, eye bar, eye crop, blank and the original, where installed)",
    )
    p.add_argument("--max-side", type=int, default=1024, help="scale larger photos down to this (px)")
    p.add_argument("--no-fidelity", action="store_true", help="skip the measurement checks")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from digimask.evaluation.corpus import CorpusError, load_corpus
    from digimask.evaluation.report import write_report
    from digimask.evaluation.run import (
        NoUsablePhotos,
        analyse_stage,
        available_maskers,
        build_masker,
        evaluate,
    )

    try:
        entries = load_corpus(args.corpus)
    except CorpusError as exc:
        log.error("%s", exc)
        return 2
    specs = args.maskers or available_maskers()
    try:
        for spec in specs:
            build_masker(spec)
    except (KeyError, TypeError, ValueError) as exc:
        log.error("bad --maskers: %s", exc)
        return 2
    analyser = None if args.no_fidelity else analyse_stage()
    if analyser is None and not args.no_fidelity:
        log.warning("the analysis stage is not installed: fidelity is not measured")
    try:
        evaluation = evaluate(entries, specs, analyser=analyser, max_side=args.max_side,
                              progress=not args.no_progress)
    except NoUsablePhotos as exc:
        log.error("%s", exc)
        return 1
    report = write_report(evaluation, args.output)
    print(f"report: {report}")
    print(f"results: {report.parent / 'results.json'}")
    return 0
