"""The papermill batch runner on small crafted notebooks, and the `mri-course run` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from mri_course import runner
from mri_course.cli import main as cli_main

pytestmark = pytest.mark.slow  # batch runs and other processes: not in `make check`


def write_notebook(path: Path, *sources: str, parameters: str = "SEED = 1\nRUN_DIR = '.'") -> Path:
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.metadata["language_info"] = {"name": "python"}
    cell = new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [cell, *(new_code_cell(s) for s in sources)]
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "01_first.ipynb",
        "import json, os, pathlib\n"
        "pathlib.Path(RUN_DIR, 'first.json').write_text(json.dumps({'seed': SEED, "
        "'cwd': os.getcwd()}))",
    )
    write_notebook(
        folder / "02_second.ipynb",
        "import json, pathlib\n"
        "seed = json.loads(pathlib.Path(RUN_DIR, 'first.json').read_text())['seed']\n"
        "pathlib.Path(RUN_DIR, 'second.txt').write_text(str(seed * 2))",
    )
    return folder


def test_runs_notebooks_in_order_into_a_new_folder(notebooks: Path, tmp_path: Path) -> None:
    committed = {p: p.read_bytes() for p in notebooks.iterdir()}
    out = tmp_path / "run"
    result = runner.run_course("smoke", "phantom", out, seed=21, notebooks_dir=notebooks)
    assert [p.name for p in result.notebooks] == ["01_first.ipynb", "02_second.ipynb"]
    assert (out / "second.txt").read_text() == "42"  # 02 read what 01 wrote, seed injected
    first = json.loads((out / "first.json").read_text())
    assert Path(first["cwd"]) == notebooks  # notebooks run from their own folder
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["parameters"]["SEED"] == 21 and manifest["parameters"]["DATA"] == "phantom"
    assert {p: p.read_bytes() for p in notebooks.iterdir()} == committed


def tree(folder: Path) -> dict[str, bytes | str]:
    """Every file below `folder` with its bytes (links: their target), by relative path."""
    return {
        str(p.relative_to(folder)): (f"-> {p.readlink()}" if p.is_symlink() else p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def test_refuses_to_overwrite_an_earlier_run(notebooks: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    runner.run_course("smoke", "phantom", out, seed=1, notebooks_dir=notebooks)
    with pytest.raises(runner.CourseRunError, match="already holds an earlier run.*--overwrite"):
        runner.run_course("smoke", "phantom", out, notebooks_dir=notebooks)
    assert (out / "second.txt").read_text() == "2"


def test_overwrite_refuses_a_folder_that_is_not_a_run(notebooks: Path, tmp_path: Path) -> None:
    """A user's own folder, even with run-like names in it, is never touched."""
    out = tmp_path / "mine"
    for name in ("backup/weights.h5", "models/t1-to-t2/notes.txt", "thesis.tex", "run.json"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(f"my {name}")
    before = tree(out)
    for overwrite in (False, True):
        with pytest.raises(
            runner.CourseRunError,
            match="not a run of this course.*untouched|"
            "not a run of this course.*nothing in it was touched",
        ):
            runner.run_course(
                "smoke", "phantom", out, overwrite=overwrite, notebooks_dir=notebooks
            )
        assert tree(out) == before
    assert cli_main(["run", "--profile", "smoke", "--out", str(out), "--overwrite"]) == 2
    assert tree(out) == before


def test_overwrite_replaces_a_run_and_keeps_what_no_run_wrote(
    notebooks: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    runner.run_course("smoke", "phantom", out, seed=1, notebooks_dir=notebooks)
    (out / "my-notes.txt").write_text("keep me")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "precious.txt").write_text("not the run's")
    (out / "samples").symlink_to(elsewhere)  # a run-like name that links out of the folder
    (out / "backup").mkdir()
    (out / "backup" / "checkpoint").write_text("stale")
    runner.run_course("smoke", "phantom", out, seed=5, overwrite=True, notebooks_dir=notebooks)
    assert (out / "second.txt").read_text() == "10"  # the new run's
    assert (out / "my-notes.txt").read_text() == "keep me"
    assert not (out / "backup").exists()  # a stale checkpoint never leaks into a new run
    assert not (out / "samples").exists()  # the link is gone ...
    assert (elsewhere / "precious.txt").read_text() == "not the run's"  # ... not its target


def test_a_run_records_the_values_it_ran_with(notebooks: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    command = ["run", "--profile", "smoke", "--set", "PROFILE=course", "--out", str(out)]
    assert cli_main(command) == 2
    assert "PROFILE='course' cannot be set" in capsys.readouterr().err and not out.exists()
    result = runner.run_course("smoke", "phantom", out, notebooks_dir=notebooks)
    recorded = json.loads((out / "run.json").read_text())["parameters"]
    assert recorded == {k: v for k, v in result.parameters.items()}
    assert recorded["EPOCHS"] == runner.profiles.load_profile("smoke")["EPOCHS"]


def test_a_moved_run_resumes_in_its_new_folder(notebooks: Path, tmp_path: Path) -> None:
    write_notebook(notebooks / "03_third.ipynb", "raise RuntimeError('killed')")
    old = tmp_path / "old"
    with pytest.raises(runner.CourseRunError, match="03_third"):
        runner.run_course("smoke", "phantom", old, seed=3, notebooks_dir=notebooks)
    new = tmp_path / "moved" / "run"
    new.parent.mkdir()
    old.rename(new)
    write_notebook(
        notebooks / "03_third.ipynb",
        "import pathlib\npathlib.Path(RUN_DIR, 'third.txt').write_text(RUN_DIR)",
    )
    result = runner.resume_course(new, notebooks_dir=notebooks)
    assert not old.exists()  # nothing written where the run used to be
    assert (new / "third.txt").read_text() == str(new.resolve())
    assert result.parameters["RUN_DIR"] == str(new.resolve())
    assert json.loads((new / "run.json").read_text())["parameters"]["RUN_DIR"] == str(
        new.resolve()
    )


@pytest.mark.parametrize("content", ["", "{not json", "[]", '{"parameters": 3, "done": {}}'])
def test_resume_with_a_damaged_progress_file_is_a_clear_error(
    notebooks: Path, tmp_path: Path, capsys, content: str
) -> None:
    (tmp_path / "progress.json").write_text(content)
    assert cli_main(["run", "--resume", "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "progress.json" in error and "Traceback" not in error


def published_run(notebooks: Path, out: Path) -> Path:
    """A finished run of the crafted notebooks that claims the course profile and data."""
    runner.run_course("course", "phantom", out, notebooks_dir=notebooks)
    manifest = json.loads((out / "run.json").read_text())
    manifest["parameters"]["DATA"] = "/data/course.zip"
    (out / "run.json").write_text(json.dumps(manifest))
    return out


def test_publish_writes_all_notebooks_or_none(notebooks: Path, tmp_path: Path) -> None:
    run = published_run(notebooks, tmp_path / "run")
    before = tree(notebooks)
    (run / "02_second.ipynb").unlink()
    with pytest.raises(runner.CourseRunError, match="02_second.ipynb is missing.*nothing"):
        runner.publish(run, notebooks_dir=notebooks)
    assert tree(notebooks) == before  # 01 was not replaced either
    complete = published_run(notebooks, tmp_path / "complete")
    assert [p.name for p in runner.publish(complete, notebooks_dir=notebooks)] == [
        "01_first.ipynb",
        "02_second.ipynb",
    ]
    assert tree(notebooks) != before and not list(notebooks.glob(".*.partial"))


def test_publish_judges_a_run_by_its_values(notebooks: Path, tmp_path: Path) -> None:
    run = published_run(notebooks, tmp_path / "run")
    manifest = json.loads((run / "run.json").read_text())
    manifest["parameters"].update(EPOCHS=2, IMAGE_SIZE=64)  # "course", with smoke's values
    (run / "run.json").write_text(json.dumps(manifest))
    before = tree(notebooks)
    with pytest.raises(runner.CourseRunError, match="EPOCHS 2 \\(course: 25\\)"):
        runner.publish(run, notebooks_dir=notebooks)
    for damaged in ("{", "[]", '{"parameters": {"SEED": 1}}'):
        (run / "run.json").write_text(damaged)
        with pytest.raises(runner.CourseRunError, match="not the record of a course run"):
            runner.publish(run, notebooks_dir=notebooks)
    assert tree(notebooks) == before


def test_a_failing_cell_names_notebook_cell_and_error(notebooks: Path, tmp_path: Path) -> None:
    write_notebook(notebooks / "03_broken.ipynb", "x = 1", "raise ValueError('bad slice #7')")
    with pytest.raises(runner.CourseRunError) as caught:
        runner.run_course("smoke", "phantom", tmp_path / "run", notebooks_dir=notebooks)
    message = str(caught.value)
    assert "03_broken.ipynb failed at cell [4]" in message  # [1] is the injected parameters
    assert "ValueError: bad slice #7" in message and "raise ValueError" in message


def test_bad_parameters_fail_before_any_work(notebooks: Path, tmp_path: Path) -> None:
    out = tmp_path / "never"
    with pytest.raises(ValueError, match="SEED=-3 is out of range"):
        runner.run_course("smoke", "phantom", out, seed=-3, notebooks_dir=notebooks)
    assert not out.exists()
    assert cli_main(["run", "--profile", "smoke", "--set", "SEED=-3", "--out", str(out)]) == 2
    assert not out.exists()


def test_unwritable_output_is_a_clear_error(notebooks: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(runner.CourseRunError, match="is not a folder|cannot write"):
        runner.run_course("smoke", "phantom", blocker, notebooks_dir=notebooks)
    with pytest.raises(runner.CourseRunError, match="cannot write"):
        runner.run_course("smoke", "phantom", blocker / "sub", notebooks_dir=notebooks)


def test_unknown_profile_is_rejected_by_the_command(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main(["run", "--profile", "huge"])
    assert caught.value.code == 2
    assert "invalid choice: 'huge'" in capsys.readouterr().err


def test_progress_is_shown_while_a_notebook_runs(notebooks: Path, tmp_path: Path, capfd) -> None:
    """Training's progress lines appear as they are printed, named by notebook; the rest of a
    notebook's output and the kernel transport's warnings do not."""
    write_notebook(
        notebooks / "03_training.ipynb",
        "print('loading data')\nfor epoch in (1, 2):\n"
        "    print(f'epoch {epoch}/2  cycle 1.0  | 3 s so far, about {2 - epoch} s left')",
    )
    runner.run_course("smoke", "phantom", tmp_path / "run", notebooks_dir=notebooks)
    out, err = capfd.readouterr()
    assert "  03_training | epoch 1/2  cycle 1.0  | 3 s so far, about 1 s left" in out
    assert "  03_training | epoch 2/2" in out and "loading data" not in out
    assert "without encryption" not in out + err and "WARNING" not in err
    everything = tmp_path / "everything"
    runner.run_course("smoke", "phantom", everything, notebooks_dir=notebooks, log_output=True)
    assert "  03_training | loading data" in capfd.readouterr().out


def test_a_second_run_into_the_same_folder_is_refused_until_the_first_dies(
    notebooks: Path, tmp_path: Path
) -> None:
    """The first run holds the folder's lock; a second is refused at once, and neither a
    SIGKILL'd run nor its lock file blocks `--resume` afterwards."""
    hold = tmp_path / "hold"  # the slow notebook waits while this file exists
    hold.write_text("")
    write_notebook(
        notebooks / "03_slow.ipynb",
        f"import pathlib, time\nhold = pathlib.Path({str(hold)!r})\n"
        "pathlib.Path(RUN_DIR, 'started').write_text('yes')\n"
        "while hold.exists():\n    time.sleep(0.2)",
    )
    out = tmp_path / "run"
    program = (
        "import sys; from pathlib import Path; from mri_course import runner\n"
        "runner.run_course('smoke', 'phantom', sys.argv[1], notebooks_dir=Path(sys.argv[2]))"
    )
    first = subprocess.Popen(
        [sys.executable, "-c", program, str(out), str(notebooks)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (out / "started").exists(), "the first run did not start"
        before = tree(out)
        for overwrite in (False, True):
            with pytest.raises(runner.CourseRunError, match="another `mri-course run`.*now"):
                runner.run_course("smoke", "phantom", out, overwrite=overwrite,
                                  notebooks_dir=notebooks)  # fmt: skip
        with pytest.raises(runner.CourseRunError, match="another `mri-course run`"):
            runner.resume_course(out, notebooks_dir=notebooks)
        assert tree(out) == before  # the second run touched nothing
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the runner and its kernel
        first.wait()
    hold.unlink()
    result = runner.resume_course(out, notebooks_dir=notebooks)  # the lock died with it
    assert (out / "run.json").is_file() and "03_slow.ipynb" in result.seconds


def test_several_seeds_give_one_report_of_mean_and_spread(notebooks: Path, tmp_path: Path) -> None:
    write_notebook(
        notebooks / "03_training.ipynb",
        "import json, pathlib\nscore = 0.9 + SEED / 100\n"
        "nested = {'t1-to-t2': {'model': {'whole': {'ssim': 2 * score}}}}\n"
        "evaluation = {'cycle_ssim_t1': score, **nested}\n"
        "result = json.dumps({'evaluation': evaluation})\n"
        "pathlib.Path(RUN_DIR, '04_training.json').write_text(result)",
    )
    out = tmp_path / "seeds"
    report = runner.run_seeds("smoke", "phantom", out, [1, 2, 3], notebooks_dir=notebooks)
    assert sorted(p.name for p in out.iterdir()) == [
        "seed-1",
        "seed-2",
        "seed-3",
        "seeds.json",
        "seeds.md",
    ]
    cycle = report["figures"]["cycle_ssim_t1"]
    assert cycle["mean"] == pytest.approx(0.92) and cycle["std"] == pytest.approx(0.01)
    assert (cycle["min"], cycle["max"], cycle["n"]) == (
        pytest.approx(0.91),
        pytest.approx(0.93),
        3,
    )
    assert report["figures"]["t1-to-t2/model/whole/ssim"]["std"] == pytest.approx(0.02)
    assert "| cycle_ssim_t1 | 0.920 ± 0.010 | 0.910 .. 0.930 |" in (out / "seeds.md").read_text()
    for seed in (1, 2, 3):
        recorded = json.loads((out / f"seed-{seed}" / "run.json").read_text())["parameters"]
        assert recorded["SEED"] == seed
    with pytest.raises(runner.CourseRunError, match="not empty"):
        runner.run_seeds("smoke", "phantom", out, [1, 2], notebooks_dir=notebooks)


@pytest.mark.parametrize(
    ("argument", "message"),
    [("1", "at least two different seeds"), ("1,1", "at least two different"),
     ("1,x", "whole numbers separated by commas"), ("1,-2", "SEED=-2 is out of range")],
)  # fmt: skip
def test_bad_seed_lists_fail_before_any_work(tmp_path, capsys, argument, message) -> None:
    out = tmp_path / "never"
    assert cli_main(["run", "--profile", "smoke", "--seeds", argument, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err and not out.exists()


def test_published_outputs_name_project_files_relatively(notebooks: Path, tmp_path: Path) -> None:
    root = runner.project_root()
    write_notebook(
        notebooks / "03_warns.ipynb",
        "import sys\n"
        f"print({str(root)!r} + '/.venv/lib/site.py:74: UserWarning: shuffle', file=sys.stderr)",
    )
    runner.publish(published_run(notebooks, tmp_path / "run"), notebooks_dir=notebooks)
    cells = nbformat.read(notebooks / "03_warns.ipynb", as_version=4).cells
    printed = "".join(o.get("text", "") for c in cells if c.cell_type == "code" for o in c.outputs)
    assert printed.startswith(".venv/lib/site.py:74: UserWarning") and str(root) not in printed


def test_resume_keeps_its_settings_and_its_checkpoint(
    notebooks: Path, tmp_path: Path, capsys
) -> None:
    """A run started with RESTART=true deleted an older checkpoint when it began; resuming it
    must not delete its own again. Options a resume would ignore are refused."""
    write_notebook(notebooks / "03_third.ipynb", "raise RuntimeError('killed')")
    out = tmp_path / "run"
    with pytest.raises(runner.CourseRunError):
        runner.run_course(
            "smoke", "phantom", out, overrides={"RESTART": True}, notebooks_dir=notebooks
        )
    write_notebook(notebooks / "03_third.ipynb", "x = 1")
    for extra in (["--set", "EPOCHS=3"], ["--seed", "3"], ["--overwrite"]):
        assert cli_main(["run", "--resume", "--out", str(out), *extra]) == 2
        assert (
            "--resume finishes a run with the settings it started with" in capsys.readouterr().err
        )
    result = runner.resume_course(out, notebooks_dir=notebooks)
    assert "RESTART" not in result.parameters
    for name in ("DATA", "RUN_DIR"):
        with pytest.raises(runner.ParameterError, match=f"{name} is not set with --set"):
            runner.run_course("smoke", "phantom", tmp_path / "x", overrides={name: "a"},
                              notebooks_dir=notebooks)  # fmt: skip
