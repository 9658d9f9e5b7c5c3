"""Run the course notebooks in order as one batch with papermill (docs/usage.md).

Each run gets a new folder: the executed copies of the notebooks and everything they write
(manifests, figures, models) go there; the committed notebooks are only ever read. The
notebooks pass results to each other through files in that folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mri_helpers import fileio, manifest, profiles
from mri_helpers.data import read_course_data
from mri_helpers.datafiles import AUTO, PHANTOM, find_data, project_root
from mri_helpers.errors import CourseError, CourseRunError, DataError, ParameterError

from .cluster import cluster_task, is_chief_task


@dataclass(frozen=True)
class RunResult:
    """Where a finished batch run left its notebooks and what it ran."""

    run_dir: Path
    notebooks: list[Path]
    parameters: dict[str, Any]
    seconds: dict[str, float]


def course_notebooks(notebooks_dir: Path | None = None) -> list[Path]:
    """The course notebooks `NN_topic.ipynb`, in order."""
    folder = notebooks_dir or project_root() / "notebooks"
    found = sorted(folder.glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise CourseRunError(
            f"no course notebooks (NN_topic.ipynb) in {folder}; run from the course repository "
            "or pass --notebooks DIR."
        )
    return found


# Everything `mri-course run` writes into a run folder, and so all that --overwrite may remove:
# the executed notebooks, the notebooks' manifests, and the files and folders they write.
RUN_PATTERNS = (
    "[0-9][0-9]_*.ipynb",
    "[0-9][0-9]_*.json",
    "[0-9][0-9]_*.json.partial",
    "progress.json",
    "progress.json.partial",
    "run.json",
    "backup",
    "models",
    "samples",
    "tensorboard",
    "translated",
    "figures",
    "history.csv",
    "quality.csv",
    "held_out_t1.png",
    "untrained_generator.keras",
    "scan",
    "time_budget.json",
    ".write-test",
)


def is_run_folder(folder: Path) -> bool:
    """Whether `folder` was written by `mri-course run`: its progress.json or run.json is a
    JSON object with the run's parameters."""
    for name in (f"{PROGRESS}.json", "run.json"):
        try:
            content = fileio.read_json(folder / name)
        except DataError:
            continue
        if isinstance(content, dict) and isinstance(content.get("parameters"), dict):
            return True
    return False


def run_entries(folder: Path) -> list[Path]:
    """The files and folders in `folder` that a run writes (RUN_PATTERNS)."""
    found = {entry for pattern in RUN_PATTERNS for entry in folder.glob(pattern)}
    return sorted(found)


def clear_run(folder: Path) -> list[Path]:
    """Remove what a run wrote in `folder`; return the entries kept (not written by a run).

    A link is removed as a link: what it points to is never touched.
    """
    for entry in run_entries(folder):
        if entry.is_symlink() or not entry.is_dir():
            entry.unlink(missing_ok=True)
        else:
            shutil.rmtree(entry)
    return sorted(folder.iterdir())


def run_dir_for(out: str | os.PathLike | None, profile: str) -> Path:
    """The absolute run folder: `out`, or runs/PROFILE-TIMESTAMP."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        out = project_root() / "runs" / f"{profile}-{stamp}"
    return Path(out).expanduser().resolve()


def _entries(folder: Path) -> list[Path]:
    """What a folder holds, but the run lock."""
    return sorted(p for p in folder.iterdir() if p.name != LOCK) if folder.is_dir() else []


def refuse_foreign_folder(run_dir: Path) -> None:
    """Refuse, before touching anything, an --out that is a file or a non-empty folder that
    is not a run of this course."""
    if run_dir.exists() and not run_dir.is_dir():
        raise CourseRunError(f"{run_dir} exists and is not a folder; choose another --out.")
    names = [p.name for p in _entries(run_dir)]
    if names and not is_run_folder(run_dir):
        shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
        raise CourseRunError(
            f"{run_dir} is not empty and is not a run of this course (it holds {shown}); "
            "nothing in it was touched. --overwrite replaces only a folder written by "
            "`mri-course run`. Choose another --out, or an empty folder."
        )


LOCK = ".mri-course.lock"  # held by the one `mri-course run` writing into the folder


@contextlib.contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder's lock while a run writes there; a second run into the same folder
    is refused at once. The operating system releases the lock when the process ends, however
    it ends (SIGKILL too), so a lock never outlives its run; the file goes with it, unless the
    process was killed."""
    import fcntl  # POSIX; the course runs on Linux and macOS

    lock = run_dir / LOCK
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        handle = lock.open("a+")
    except OSError as error:
        raise CourseRunError(
            f"cannot write to {run_dir} ({error.strerror}); choose a writable --out."
        ) from None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if not lock.exists() or not os.path.samestat(os.fstat(handle.fileno()), lock.stat()):
                raise BlockingIOError  # the run that held it removed it as we opened it
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise CourseRunError(
                f"another `mri-course run` ({owner}) is writing into {run_dir} now; wait for "
                "it to finish, or choose another --out."
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)  # while still held: no other run has it open locked
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Check the (locked) run folder: a used one is refused, unless `overwrite`: then what the
    earlier run wrote is removed and everything else is kept."""
    used = bool(_entries(run_dir))
    unfinished = used and not (run_dir / "run.json").exists()
    if used and not overwrite and unfinished:
        raise CourseRunError(
            f"{run_dir} holds an interrupted run; continue it with "
            f"`mri-course run --resume --out {run_dir}`, or start again with --overwrite."
        )
    if used and not overwrite:
        raise CourseRunError(
            f"{run_dir} already holds an earlier run; choose another --out or pass --overwrite."
        )
    if used:
        kept = [p for p in clear_run(run_dir) if p.name != LOCK]
        if kept:
            shown = ", ".join(p.name for p in kept[:5]) + (" ..." if len(kept) > 5 else "")
            print(f"--overwrite: removed the earlier run; kept {len(kept)} other entries: {shown}")
    try:
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise CourseRunError(
            f"cannot write to {run_dir} ({error.strerror}); choose a writable --out."
        ) from None


def run_course(
    profile: str = "course",
    data: str = AUTO,
    out: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    seed: int | None = None,
    overrides: dict[str, Any] | None = None,
    notebooks_dir: Path | None = None,
    log_output: bool = False,
) -> RunResult:
    """Execute every course notebook in order into a new run folder."""
    overrides = dict(overrides or {})
    if "PROFILE" in overrides:
        raise ParameterError(
            f"PROFILE={overrides['PROFILE']!r} cannot be set as a parameter: a run's values come "
            "from its profile. Choose the profile with --profile."
        )
    for name, option in (("DATA", "--data"), ("RUN_DIR", "--out")):
        if name in overrides:
            raise ParameterError(f"{name} is not set with --set; use {option}.")
    if seed is not None:
        overrides["SEED"] = seed
    parameters = profiles.resolve(profile, **overrides)  # fails before any work
    notebooks = course_notebooks(notebooks_dir)
    parameters["DATA"] = _resolve_data(data)
    run_dir = run_dir_for(out, profile)
    if out is None and cluster_task() is not None:
        raise CourseRunError(
            "a run across machines needs --out: the run folder every machine sees, on a shared "
            "file system (the same folder each worker restarts from)."
        )
    if not is_chief_task():
        if run_dir.exists() and not run_dir.is_dir():
            raise CourseRunError(f"{run_dir} exists and is not a folder; choose another --out.")
        return _run_as_other_worker(notebooks, parameters, run_dir, False, log_output)
    refuse_foreign_folder(run_dir)
    with run_lock(run_dir):
        prepare_run_dir(run_dir, overwrite)
        parameters["RUN_DIR"] = str(run_dir)
        return _execute(notebooks, parameters, run_dir, {}, log_output)


def resume_course(
    out: str | os.PathLike, notebooks_dir: Path | None = None, log_output: bool = False
) -> RunResult:
    """Finish an interrupted run in its folder, with its parameters.

    Notebooks that finished are not run again; the interrupted one runs again, and its
    training continues from the last checkpoint (04_training's BackupAndRestore).
    """
    run_dir = Path(out).expanduser().resolve()
    if not (run_dir / f"{PROGRESS}.json").is_file() and not (run_dir / "run.json").is_file():
        shared = " (a worker of a run across machines sees it on a shared file system)"
        raise CourseRunError(
            f"{run_dir} holds no interrupted course run ({PROGRESS}.json is missing"
            f"{shared if cluster_task() else ''}); start a new run instead."
        )
    if not is_chief_task():  # reads the chief's run; the chief holds its lock
        parameters, _ = _interrupted_run(run_dir)
        notebooks = course_notebooks(notebooks_dir)
        return _run_as_other_worker(notebooks, parameters, run_dir, True, log_output)
    with run_lock(run_dir):  # read the progress only once no other run writes it
        parameters, done = _interrupted_run(run_dir)
        print(f"Resuming the run in {run_dir}; finished before: {sorted(done) or 'none'}")
        return _execute(course_notebooks(notebooks_dir), parameters, run_dir, done, log_output)


def _interrupted_run(run_dir: Path) -> tuple[dict[str, Any], dict[str, float]]:
    """The parameters (RUN_DIR: `run_dir`) and finished notebooks of the run in `run_dir`."""
    if (run_dir / "run.json").is_file():
        raise CourseRunError(f"{run_dir} holds a finished run; there is nothing to resume.")
    try:
        progress = manifest.read(run_dir, PROGRESS)
    except CourseError:
        progress = {}
    parameters, done = progress.get("parameters"), progress.get("done")
    if not isinstance(parameters, dict) or not isinstance(done, dict):
        raise CourseRunError(
            f"{run_dir / PROGRESS}.json does not describe a course run (no parameters or "
            f"list of finished notebooks); start again with `mri-course run --overwrite "
            f"--out {run_dir}`."
        )
    # RESTART deleted an older checkpoint when the run began; resuming keeps this one.
    kept = {k: v for k, v in parameters.items() if k not in ("RUN_DIR", "RESTART")}
    parameters = {**profiles.check(kept)}
    # The run's files live in the folder it is given now, wherever it was started.
    parameters["RUN_DIR"] = str(run_dir)
    return parameters, done


# --- a worker of a run across machines (README, "On a GPU / several machines") -------------
def _run_as_other_worker(
    notebooks: list[Path], parameters: dict[str, Any], run_dir: Path, resume: bool,
    log_output: bool,
) -> RunResult:  # fmt: skip
    """Run the course as a non-chief worker: the same notebooks, in step with the chief's,
    in a temporary folder removed at the end (kept, and named, if a notebook fails). The
    chief's run folder is only read: resuming, this worker starts from a copy of its
    checkpoint (backup/), as the chief does."""
    import tempfile

    work = Path(tempfile.mkdtemp(prefix="mri-course-worker-"))
    shared = run_dir / "backup"
    if resume and shared.is_dir():
        (work / "backup").mkdir()
        for file in shared.iterdir():
            shutil.copy2(file, work / "backup" / file.name)
    print(
        f"A worker of a run across machines: the chief writes the run into {run_dir}; this "
        f"worker writes only into {work} (removed at the end)."
    )
    try:
        result = _execute(notebooks, {**parameters, "RUN_DIR": str(work)}, work, {}, log_output)
    except CourseError as error:
        raise CourseRunError(
            f"{error}\n(This worker's folder {work} is kept; remove it.)"
        ) from None
    shutil.rmtree(work, ignore_errors=True)
    return RunResult(run_dir, [], result.parameters, result.seconds)


PROGRESS = "progress"  # <run>/progress.json: parameters and finished notebooks


def _execute(
    notebooks: list[Path],
    parameters: dict[str, Any],
    run_dir: Path,
    done: dict[str, float],
    log_output: bool,
) -> RunResult:
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    print(f"Run folder: {run_dir}")
    if parameters["DATA"] == PHANTOM:
        print("Data: the built-in phantom (no course zip found or --data phantom).")
    else:
        print(f"Data: {parameters['DATA']}")
    seconds = dict(done)
    manifest.write(run_dir, PROGRESS, {"parameters": parameters, "done": seconds})
    for notebook in notebooks:
        target = run_dir / notebook.name
        if notebook.name in done:
            continue
        declared = pm.inspect_notebook(str(notebook))
        given = {k: v for k, v in parameters.items() if k in declared}
        print(f"Running {notebook.name} ...", flush=True)
        start = time.perf_counter()
        try:
            pm.execute_notebook(
                str(notebook),
                str(target),
                parameters=given,
                kernel_name="python3",
                language="python",
                cwd=str(notebook.parent),
                progress_bar=False,
                stdout_file=PrintedLines(notebook.stem, everything=log_output),
                kernel_manager_class=local_kernel_manager(),
            )
        except PapermillExecutionError as error:
            first_line = (error.source or "").strip().splitlines()[:1]
            raise CourseRunError(
                f"{notebook.name} failed at cell [{error.exec_count}] "
                f"({first_line[0] if first_line else 'empty cell'!r}): "
                f"{error.ename}: {error.evalue}\nThe executed copy with the full traceback is "
                f"{target}."
            ) from None
        except Exception as error:  # the kernel died (memory), a cell timed out, ...
            raise CourseRunError(
                f"{notebook.name} did not finish ({type(error).__name__}: {error}). Continue "
                f"with `mri-course run --resume --out {run_dir}` once the cause is fixed."
            ) from None
        seconds[notebook.name] = round(time.perf_counter() - start, 1)
        manifest.write(run_dir, PROGRESS, {"parameters": parameters, "done": seconds})
        print(f"  done in {seconds[notebook.name]:.0f} s")
    _write_run_manifest(run_dir, parameters, seconds)
    executed = [run_dir / n.name for n in notebooks]
    return RunResult(run_dir, executed, parameters, seconds)


class PrintedLines:
    """Where papermill writes what a notebook prints while it runs: the lines that report
    progress (training's "epoch 3/25 ... about 12 min left"), or with `everything` all lines,
    are shown at once, prefixed with the notebook's name."""

    def __init__(self, notebook: str, everything: bool = False):
        self.notebook, self.everything, self.partial = notebook, everything, ""

    def write(self, text: str) -> None:
        *lines, self.partial = (self.partial + text).split("\n")
        for line in lines:
            if self.everything or line.startswith(PROGRESS_PREFIXES):
                print(f"  {self.notebook} | {line}", flush=True)

    def flush(self) -> None:
        pass


PROGRESS_PREFIXES = ("epoch ", "resuming ")


def local_kernel_manager():
    """Jupyter's kernel manager with the kernel on local (IPC) sockets instead of TCP ports:
    the kernel is only ever reached from this machine, and it then prints no warning about
    unencrypted TCP for every notebook of a batch."""
    import tempfile

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class LocalKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc"

        @default("ip")
        def _ip_default(self) -> str:  # the sockets' file names start with this
            return os.path.join(tempfile.gettempdir(), f"mri-course-kernel-{os.getpid()}")

    return LocalKernelManager


def _resolve_data(data: str) -> str:
    """Turn the --data choice into what the notebooks get: "phantom" or an absolute path."""
    if data == PHANTOM:
        return PHANTOM
    found = find_data(None if data == AUTO else data)
    if found is None:
        return PHANTOM
    read_course_data(found)  # every slice checked now, not in a notebook minutes later
    return str(found.resolve())


def _write_run_manifest(run_dir: Path, parameters: dict, seconds: dict) -> None:
    import importlib.metadata as md

    versions = {}
    for package in ("tensorflow-cpu", "tensorflow", "keras", "numpy", "mri-helpers"):
        try:
            versions[package] = md.version(package)
        except md.PackageNotFoundError:
            continue
    manifest = {
        "parameters": parameters,
        "seconds_per_notebook": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": versions,
        "finished": datetime.now().isoformat(timespec="seconds"),
    }
    (run_dir / "run.json").write_text(json.dumps(manifest, indent=2))


def publish(run_dir: str | os.PathLike, notebooks_dir: Path | None = None) -> list[Path]:
    """Copy the executed notebooks of a finished `course` run over the committed ones.

    The committed notebooks then show real results to a learner browsing the repository. The
    papermill injected-parameters cell and papermill metadata are dropped and execution counts
    renumbered 1..N; every other cell must still match the committed source (no stale runs).
    Everything is checked first; then all notebooks are written, or none.
    """
    import nbformat

    run_dir = Path(run_dir)
    parameters = _finished_run_parameters(run_dir)
    if parameters.get("DATA") == PHANTOM:
        raise CourseRunError(
            f"{run_dir} ran on the phantom; committed notebooks show the course data. Put the "
            "zip into data/ (or set MRI_DATA) and run again."
        )
    course = profiles.load_profile("course")
    differing = [
        f"{name} {parameters.get(name)!r} (course: {value!r})"
        for name, value in course.items()
        if parameters.get(name) != value
    ]
    if differing:
        raise CourseRunError(
            f"{run_dir} did not run with the 'course' profile's values: {', '.join(differing)}. "
            "Committed notebooks carry the course profile's outputs; run `mri-course run "
            "--profile course` without --set and publish that."
        )
    ready = []
    for committed_path in course_notebooks(notebooks_dir):
        executed_path = run_dir / committed_path.name
        if not executed_path.is_file():
            raise CourseRunError(
                f"{executed_path} is missing, so nothing was published; publish a complete run."
            )
        try:
            executed = nbformat.read(executed_path, as_version=4)
        except Exception as error:  # nbformat raises several types for broken files
            raise CourseRunError(
                f"{executed_path} is not a readable notebook ({type(error).__name__}); nothing "
                "was published."
            ) from None
        committed = nbformat.read(committed_path, as_version=4)
        executed.cells = [
            c for c in executed.cells if "injected-parameters" not in c.metadata.get("tags", [])
        ]
        if [c.source for c in executed.cells] != [c.source for c in committed.cells]:
            raise CourseRunError(
                f"{executed_path} was run from a different version of {committed_path.name}, so "
                "nothing was published; run the course again, then publish."
            )
        _strip_run_metadata(executed)
        text = nbformat.writes(executed)
        ready.append((committed_path, (text if text.endswith("\n") else text + "\n").encode()))
    figure = run_dir / FIGURE
    if figure.is_file():  # the front page's picture, from the same run
        docs = (notebooks_dir or project_root() / "notebooks").parent / "docs" / "figures"
        ready.append((docs / figure.name, figure.read_bytes()))
    _write_all_or_nothing(ready)
    return [path for path, _ in ready]


FIGURE = "figures/held_out_translation.png"  # written by 04_training, shown by the README


def _finished_run_parameters(run_dir: Path) -> dict[str, Any]:
    """The parameters recorded in a finished run's run.json, or a clear error."""
    manifest_path = run_dir / "run.json"
    if fileio.kind_of(manifest_path) == "missing":
        raise CourseRunError(f"{run_dir} is not a finished run (no run.json); run it first.")
    try:
        parameters = fileio.read_json(manifest_path).get("parameters")
    except (DataError, AttributeError):
        parameters = None
    if not isinstance(parameters, dict) or "PROFILE" not in parameters:
        raise CourseRunError(
            f"{manifest_path} is not the record of a course run (unreadable, or no PROFILE "
            "among its parameters); publish a folder written by `mri-course run`."
        )
    return parameters


def _write_all_or_nothing(files: list[tuple[Path, bytes]]) -> None:
    """Write every (path, content) whole, or none of them (`fileio.replacing_all`)."""
    failed = files[0][0]
    try:
        for path, _ in files:
            failed = path
            path.parent.mkdir(parents=True, exist_ok=True)
        with fileio.replacing_all(path for path, _ in files) as partials:
            for path, content in files:
                failed = path
                partials[path].write_bytes(content)
    except OSError as error:
        raise CourseRunError(
            f"cannot write {failed} ({error.strerror}); nothing was published."
        ) from None


def _strip_run_metadata(notebook) -> None:
    notebook.metadata.pop("papermill", None)
    count = 0
    for cell in notebook.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        if "remove-output" in cell.metadata.get("tags", []):  # e.g. a 1 MB interactive viewer
            cell.outputs = []  # made when the lesson runs; myst-nb's tag hides it in the book
        for output in cell.get("outputs", []):
            if "execution_count" in output:
                output["execution_count"] = count
            _without_machine_paths(output)


def _without_machine_paths(output) -> None:
    """Paths inside the project (a library's warning names its file) become relative, so a
    committed output does not carry the folders of the machine that ran it."""
    root = f"{project_root()}{os.sep}"
    if "text" in output:
        output["text"] = output["text"].replace(root, "")
    for kind, value in output.get("data", {}).items():
        if kind.startswith("text/") and isinstance(value, str):
            output["data"][kind] = value.replace(root, "")


# --- several seeds (docs/results.md, "Spread across runs") ---------------------------------
def run_seeds(
    profile: str,
    data: str,
    out: str | os.PathLike | None,
    seeds: list[int],
    *,
    overwrite: bool = False,
    overrides: dict[str, Any] | None = None,
    notebooks_dir: Path | None = None,
    log_output: bool = False,
) -> dict[str, Any]:
    """Run the course once per seed, each into `out/seed-N`, then write `out/seeds.json` and
    `out/seeds.md`: every quality figure of lesson 04 as mean ± standard deviation."""
    if len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise ParameterError(f"--seeds {seeds}: give at least two different seeds, e.g. 1,2,3.")
    for seed in seeds:
        profiles.SPECS["SEED"].check("SEED", seed)
    folder = run_dir_for(out, f"{profile}-seeds")
    if folder.exists() and not folder.is_dir():
        raise CourseRunError(f"{folder} exists and is not a folder; choose another --out.")
    if _entries(folder) and not overwrite:
        raise CourseRunError(
            f"{folder} is not empty; choose another --out, or pass --overwrite to run the "
            "seeds again there (each seed-N run is replaced as --overwrite replaces a run; "
            "nothing else is removed)."
        )
    runs = []
    for seed in seeds:
        print(f"== seed {seed} ==", flush=True)
        result = run_course(
            profile, data, folder / f"seed-{seed}", overwrite=overwrite, seed=seed,
            overrides=overrides, notebooks_dir=notebooks_dir, log_output=log_output,
        )  # fmt: skip
        runs.append(result.run_dir)
    report = spread_report(runs)
    (folder / "seeds.json").write_text(json.dumps(report, indent=2))
    (folder / "seeds.md").write_text(spread_table(report))
    return report


def spread_report(run_dirs: list[Path]) -> dict[str, Any]:
    """Mean, standard deviation (n - 1), minimum and maximum of every number in the runs'
    lesson 04 evaluation (`04_training.json`), by name."""
    values: dict[str, list[float]] = {}
    for run_dir in run_dirs:
        evaluation = manifest.read(run_dir, "04_training").get("evaluation", {})
        for name, value in _flatten(evaluation).items():
            values.setdefault(name, []).append(value)
    figures = {
        name: {
            "mean": statistics.fmean(numbers),
            "std": statistics.stdev(numbers) if len(numbers) > 1 else 0.0,
            "min": min(numbers),
            "max": max(numbers),
            "n": len(numbers),
        }
        for name, numbers in values.items()
    }
    return {"runs": [str(p) for p in run_dirs], "figures": figures}


def _flatten(tree: Any, prefix: str = "") -> dict[str, float]:
    if isinstance(tree, dict):
        flat = {}
        for key, value in tree.items():
            flat.update(_flatten(value, f"{prefix}{key}/"))
        return flat
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {prefix.rstrip("/"): float(tree)}
    return {}


def spread_table(report: dict[str, Any]) -> str:
    """The spread report as a Markdown table."""
    runs = len(report["runs"])
    lines = [
        f"Quality over {runs} seeds (mean ± standard deviation, min..max)",
        "",
        "| figure | mean ± std | min .. max |",
        "|---|---|---|",
    ]
    for name, f in sorted(report["figures"].items()):
        lines.append(
            f"| {name} | {f['mean']:.3f} ± {f['std']:.3f} | {f['min']:.3f} .. {f['max']:.3f} |"
        )
    return "\n".join(lines) + "\n"
