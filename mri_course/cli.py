"""The `mri-course` command: check the data, run the course as a batch."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path

from mri_helpers import fileio, profiles
from mri_helpers.data import load_dataset
from mri_helpers.datafiles import AUTO, PHANTOM, describe, find_data, identify_data
from mri_helpers.errors import CourseError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mri-course",
        description="Unpaired T1 <-> T2 MRI translation with a CycleGAN: the course's commands.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_check(commands)
    _add_run(commands)
    _add_translate(commands)
    _add_harmonise(commands)
    _add_evaluate(commands)
    _add_bench(commands)
    _add_publish(commands)
    _add_export_lessons(commands)
    _add_publish_solutions(commands)
    _add_paired_bound(commands)
    return parser


def _add_check(commands) -> None:
    check = commands.add_parser(
        "check-data", help="find and validate the course data; print a summary or the problems"
    )
    check.add_argument(
        "path", nargs="?", help="the course zip or folder (default: $MRI_DATA, then data/)"
    )


def _add_run(commands) -> None:
    run = commands.add_parser(
        "run",
        help="execute the notebooks in order into a run folder",
        epilog="Across machines: set TF_CONFIG on each machine and start the same command "
        "with the same --out on a shared file system; the chief alone writes it (README, "
        '"On a GPU / several machines").',
    )
    run.add_argument("--profile", choices=profiles.PROFILES, default="course")
    run.add_argument(
        "--data", default=AUTO, help='"auto" (default), "phantom", or the course zip or folder'
    )
    run.add_argument("--out", help="run folder (default: runs/PROFILE-TIMESTAMP)")
    run.add_argument("--seed", type=int, help="random seed (default: the profile's)")
    run.add_argument(
        "--seeds",
        metavar="N,N,...",
        help="run once per seed into --out/seed-N and report each figure as mean ± std",
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override one notebook parameter, e.g. --set EPOCHS=40 (checked by its type)",
    )
    run.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (only what a run wrote there is removed)",
    )
    run.add_argument("--resume", action="store_true", help="finish the interrupted run in --out")
    run.add_argument("--log-output", action="store_true", help="stream the notebooks' output")


def _add_translate(commands) -> None:
    translate = commands.add_parser(
        "translate",
        help="translate PNG slices, NIfTI volumes or DICOM series with an exported generator",
    )
    translate.add_argument("--model", required=True, help="export folder, e.g. RUN/models")
    translate.add_argument("--direction", required=True, choices=["t1-to-t2", "t2-to-t1"])
    translate.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="PNG files or folders, NIfTI files (.nii, .nii.gz), DICOM folders or files",
    )
    translate.add_argument("--out", required=True, help="folder for the translations")
    translate.add_argument(
        "--overwrite", action="store_true", help="replace translations that exist in --out"
    )
    translate.add_argument(
        "--uncertainty",
        action="store_true",
        help="volumes: also write where the export's averaged copies disagree (a NIfTI map)",
    )
    translate.add_argument("--series", help="DICOM: the series (UID or number) to translate")
    translate.add_argument("--volume", type=int, help="4-D NIfTI: the volume (0-based) to take")
    translate.add_argument(
        "--mixed-precision",
        choices=["auto", "on", "off"],
        help="volumes: the network's precision, as MIXED_PRECISION (auto: bfloat16 on a CPU "
        "that computes it, float16 on a GPU, else float32; off: float32)",
    )


def _add_harmonise(commands) -> None:
    harmonise = commands.add_parser(
        "harmonise",
        help="bring NIfTI volumes or DICOM series from another scanner to the grey levels of a "
        "model's training slices (bias correction, landmark standardisation), to translate next",
    )
    harmonise.add_argument("--model", required=True, help="export folder, e.g. RUN/models")
    harmonise.add_argument("--direction", required=True, choices=["t1-to-t2", "t2-to-t1"])
    harmonise.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="NIfTI files, DICOM folders or files"
    )
    harmonise.add_argument("--out", required=True, help="folder for the harmonised volumes")
    harmonise.add_argument(
        "--overwrite", action="store_true", help="replace harmonised volumes that exist in --out"
    )
    harmonise.add_argument("--series", help="DICOM: the series (UID or number) to take")
    harmonise.add_argument("--volume", type=int, help="4-D NIfTI: the volume (0-based) to take")


def _add_evaluate(commands) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="measure exported generators on held-out slices; write JSON"
    )
    evaluate.add_argument("--model", required=True, help="a run's models folder (both ways)")
    evaluate.add_argument(
        "--data", default="course", help='"course" (the zip, found as usual), "phantom", or a path'
    )
    evaluate.add_argument("--json", required=True, help="where to write the metrics")
    evaluate.add_argument(
        "--scan", help="a volume (NIfTI or DICOM) to translate and score, instead of --data"
    )
    evaluate.add_argument("--truth", help="with --scan: the paired true volume, on its grid")
    evaluate.add_argument(
        "--direction", choices=["t1-to-t2", "t2-to-t1"], help="with --scan: which way"
    )
    evaluate.add_argument("--series", help="with --scan: the scan's DICOM series")
    evaluate.add_argument("--truth-series", help="with --truth: the true volume's DICOM series")
    evaluate.add_argument(
        "--levels",
        type=_levels,
        metavar="LOW,HIGH",
        help="with --scan: also score the axial slices between these heights (mm) on their own",
    )
    evaluate.add_argument(
        "--mixed-precision",
        choices=["auto", "on", "off"],
        help="with --scan: the network's precision, as for translate (default auto)",
    )
    evaluate.add_argument(
        "--labels",
        metavar="LABELS.nii.gz",
        help="with --scan: true labels on the scan's grid (0 background, 1 CSF, 2 GM, 3 WM, "
        "4 lesion), for tissue Dice and lesion scores",
    )


def _add_bench(commands) -> None:
    bench = commands.add_parser(
        "bench", help="benchmark against the TensorFlow tutorial's step; write JSON + Markdown"
    )
    bench.add_argument("--quick", action="store_true", help="fewer repetitions (~5 minutes)")
    bench.add_argument("--out", default="benchmarks/results", help="folder for the results")


def _add_publish(commands) -> None:
    publish = commands.add_parser(
        "publish", help="copy a finished course run's executed notebooks over notebooks/"
    )
    publish.add_argument("run_dir", help="the run folder written by `mri-course run`")


def _add_export_lessons(commands) -> None:
    export = commands.add_parser(
        "export-lessons",
        help="write the lessons' '# @save' cells into mri_helpers (maintainers)",
    )
    export.add_argument(
        "--check", action="store_true", help="write nothing; fail if mri_helpers differs"
    )


def _add_publish_solutions(commands) -> None:
    commands.add_parser(
        "publish-solutions",
        help="run the worked solutions once at the course profile and commit their outputs",
    )


def _add_paired_bound(commands) -> None:
    paired = commands.add_parser(
        "paired-bound",
        help="train pix2pix on the phantom's pairs beside a finished phantom run; score it",
    )
    paired.add_argument("run_dir", help="a finished `mri-course run --data phantom` folder")
    paired.add_argument(
        "--steps", type=int, default=None, help="steps (default: the run's, head start included)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_output_places(args)
        if args.command == "check-data":
            return check_data(args.path)
        if args.command == "run":
            return run(args)
        if args.command == "publish":
            return publish(args.run_dir)
        if args.command == "translate":
            return translate(args)
        if args.command == "harmonise":
            return harmonise(args)
        if args.command == "evaluate":
            return evaluate(args)
        if args.command == "export-lessons":
            from .lesson_export import export

            return export(check=args.check)
        if args.command == "publish-solutions":
            from .solutions import publish_solutions

            for path, seconds in publish_solutions().items():
                print(f"published {path.name} ({seconds:.0f} s)")
            return 0
        if args.command == "paired-bound":
            return paired_bound(args)
        if args.command == "bench":
            from .benchmark import run as run_benchmark

            results = run_benchmark(quick=args.quick, out=args.out)
            print((Path(args.out) / "results.md").read_text())
            return 0 if results else 1
    except CourseError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 1


def check_output_places(args: argparse.Namespace) -> None:
    """The output-first rule: every place a command will write is checked (a folder or file
    that exists or can be made, writable, not a special file, not an input) before any work,
    so that no result is lost at the end. `fileio.check_output_folder` / `check_output_file`
    hold the rule; a new command names its output places here."""
    from mri_helpers.datafiles import project_root

    command = args.command
    if command == "run":
        inputs = [args.data] if args.data not in (AUTO, PHANTOM) else []
        fileio.check_output_folder(args.out or project_root() / "runs", "--out", inputs)
    elif command in ("translate", "harmonise"):
        fileio.check_output_folder(args.out, "--out", [args.model, *args.inputs])
    elif command == "evaluate":
        given = [args.model, args.scan, args.truth, args.labels]
        inputs = [*given, args.data] if args.data not in ("course", PHANTOM) else given
        fileio.check_output_file(args.json, "--json", [p for p in inputs if p])
    elif command == "bench":
        fileio.check_output_folder(args.out, "--out")
    elif command == "paired-bound":
        fileio.check_output_folder(Path(args.run_dir) / "paired", "paired-bound's output")
    elif command == "publish":
        for folder in ("notebooks", "docs"):
            fileio.check_output_folder(project_root() / folder, "publish's target")


def harmonise(args: argparse.Namespace) -> int:
    """Harmonise volumes for a model's input contrast; print what was written."""
    from .scans.harmonisation import harmonise_files

    written = harmonise_files(
        args.model, args.direction, args.inputs, args.out, overwrite=args.overwrite,
        series=args.series, volume=args.volume,
    )  # fmt: skip
    for path in written:
        print(f"wrote {path} (and its .json sidecar); translate it with the same --model")
    return 0


def paired_bound(args: argparse.Namespace) -> int:
    """Train the paired bound beside a phantom run, score it as `evaluate` scores the
    CycleGAN and write RUN_DIR/paired/metrics.json."""
    from .evaluate import evaluate_export
    from .paired import train_paired_bound

    if args.steps is not None and args.steps < 1:
        raise profiles.ParameterError(f"--steps {args.steps} must be at least 1.")
    print(f"training pix2pix on the pairs of {args.run_dir} ...", flush=True)
    trained = train_paired_bound(args.run_dir, steps=args.steps)
    scores = evaluate_export(trained["models"], "phantom")
    report = {**trained, "models": str(Path("paired") / "models"), "scores": scores}
    path = fileio.write_json(Path(args.run_dir) / "paired" / "metrics.json", report)
    print(
        f"pix2pix, {trained['budget']['steps']} steps of {trained['budget']['batch_size']} pairs"
    )
    print("\n".join(scores["summary"]))
    print(f"wrote {path}")
    return 0


def check_data(path: str | None) -> int:
    """Print a summary of the data, or every problem found; 0 when usable."""
    if path != PHANTOM and find_data(path) is None:
        print(
            "error: no course data found (looked at $MRI_DATA and data/). Put "
            "MRI+T1_T2+Dataset.zip into data/ or pass its path; without it the course uses "
            "the built-in phantom.",
            file=sys.stderr,
        )
        return 1
    dataset = load_dataset(path or AUTO)
    print(describe(dataset))
    if not dataset.is_phantom:
        print(f"  which: {identify_data(find_data(path))}")
    return 0


def run(args: argparse.Namespace) -> int:
    from .runner import cluster_task, resume_course, run_course, run_seeds

    if cluster_task() is not None and args.seeds is not None:
        raise profiles.ParameterError(
            "--seeds runs one seed after another on one machine; a run across machines "
            "(TF_CONFIG) takes one seed: --seed N."
        )

    if args.resume:
        if not args.out:
            raise profiles.ParameterError("--resume needs --out, the folder of the run.")
        ignored = [
            option
            for option, given in (
                ("--set", args.set), ("--seed", args.seed is not None),
                ("--seeds", args.seeds is not None), ("--overwrite", args.overwrite),
            )
            if given
        ]  # fmt: skip
        if ignored:
            raise profiles.ParameterError(
                f"--resume finishes a run with the settings it started with; drop {ignored}, "
                "or start a new run."
            )
        result = resume_course(args.out, log_output=args.log_output)
        print(f"Finished; results in {result.run_dir}")
        return 0

    overrides = dict(profiles.parse_setting(item) for item in args.set)
    if args.seeds is not None:
        if args.seed is not None:
            raise profiles.ParameterError("--seed and --seeds exclude each other; give one.")
        try:
            seeds = [int(part) for part in args.seeds.split(",")]
        except ValueError:
            raise profiles.ParameterError(
                f"--seeds {args.seeds!r} must be whole numbers separated by commas, e.g. 1,2,3."
            ) from None
        report = run_seeds(
            args.profile, args.data, args.out, seeds, overwrite=args.overwrite,
            overrides=overrides, log_output=args.log_output,
        )  # fmt: skip
        folder = Path(report["runs"][0]).parent
        print((folder / "seeds.md").read_text())
        print(f"Finished {len(seeds)} runs; report in {folder / 'seeds.json'}")
        return 0
    result = run_course(
        args.profile,
        args.data,
        args.out,
        overwrite=args.overwrite,
        seed=args.seed,
        overrides=overrides,
        log_output=args.log_output,
    )
    print(f"Finished in {sum(result.seconds.values()):.0f} s; results in {result.run_dir}")
    return 0


def translate(args: argparse.Namespace) -> int:
    from .png_slices import translate_files
    from .scans import is_volume_input, translate_volume_files

    scans = [item for item in args.inputs if is_volume_input(item)]
    slices = [item for item in args.inputs if not is_volume_input(item)]
    if scans and slices:
        raise CourseError(
            "translate either PNG slices or volumes (NIfTI, DICOM) in one call, not both; "
            f"e.g. {slices[0]} and {scans[0]}. Run it once for each."
        )
    if scans:
        written = translate_volume_files(
            args.model, args.direction, scans, args.out, overwrite=args.overwrite,
            uncertainty=args.uncertainty, series=args.series, volume=args.volume,
            mixed_precision=args.mixed_precision or "auto",
        )  # fmt: skip
        print(f"translated {len(written)} volume(s) {args.direction} into {args.out}")
        return 0
    if args.uncertainty or args.series is not None or args.volume is not None:
        raise CourseError("--uncertainty, --series and --volume apply to volumes only.")
    if args.mixed_precision is not None:
        raise CourseError(
            "--mixed-precision applies to volumes; PNG slices are translated in float32."
        )
    written = translate_files(
        args.model, args.direction, args.inputs, args.out, overwrite=args.overwrite
    )
    print(f"translated {len(written)} slice(s) {args.direction} into {args.out}")
    return 0


def _levels(text: str) -> tuple[float, float]:
    """`--levels LOW,HIGH`: two heights in mm."""
    try:
        low, high = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not two heights in mm, LOW,HIGH (e.g. 0,50)"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise argparse.ArgumentTypeError(f"{text!r}: the heights must be finite numbers")
    return low, high


def evaluate(args: argparse.Namespace) -> int:
    import json

    from .evaluate import evaluate_export

    target = Path(args.json)  # checked before the work (check_output_places)
    if args.scan or args.truth:
        from .evaluate import evaluate_volume

        if not (args.scan and args.truth and args.direction):
            raise CourseError(
                "a volume is scored with --scan SCAN --truth TRUE_VOLUME --direction "
                "t1-to-t2|t2-to-t1, all three."
            )
        metrics = evaluate_volume(
            args.model, args.direction, args.scan, args.truth, args.series, args.truth_series,
            levels_mm=args.levels, mixed_precision=args.mixed_precision or "auto",
            labels=args.labels,
        )  # fmt: skip
    elif args.levels is not None or args.mixed_precision is not None:
        raise CourseError(
            "--levels and --mixed-precision score a volume: use them with --scan, --truth, "
            "--direction."
        )
    elif args.labels:
        raise CourseError(
            "--labels scores a volume's tissues and lesions: use it with --scan, --truth, "
            "--direction."
        )
    else:
        metrics = evaluate_export(args.model, args.data)
    try:
        target.write_text(json.dumps(metrics, indent=2))
    except OSError as error:
        print(json.dumps(metrics, indent=2))
        raise CourseError(
            f"cannot write {target} ({error.strerror}); the metrics are printed above."
        ) from None
    for line in metrics["summary"]:
        print(line)
    print(f"wrote {args.json}")
    return 0


def publish(run_dir: str) -> int:
    from .runner import publish as publish_run

    for path in publish_run(run_dir):
        print(f"published {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
