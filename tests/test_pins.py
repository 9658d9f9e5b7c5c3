"""The pinned versions install on every Python the course supports: 3.10, 3.11, 3.12 and 3.13.

constraints.txt is one universal lock (`make lock`, with uv): a single file whose environment
markers pick each package's pin for the Python it is installed on (numpy, scipy, Sphinx... fork
at 3.11, where their newer releases start). For each supported Python the slow test has uv
resolve pyproject's `dev` extra with the lock as constraints against the registry's binary wheels
for Linux x86_64, as `make install` would (a dry run: nothing is installed), and checks that it
resolves to exactly the lock's pins for that Python, markers evaluated with `packaging`. It skips
where the registry cannot be reached, except under CI (CI set), where that fails.

The fast tests need no network: pyproject's requires-python and classifiers, the README and
environment.yml name the same Python versions as the ones tested, and the lock pins every package
once for each of them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from conftest import REPO

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PYTHONS = ("3.10", "3.11", "3.12", "3.13")
LOCK = REPO / "constraints.txt"
PROJECT = "mri-helpers"
# What uv says when the index cannot be reached at all (not a missing package or wheel).
OFFLINE = re.compile(
    r"error sending request|client error \(Connect\)|dns error|tcp connect error|timed out",
    re.IGNORECASE,
)
UV_TIMEOUT_S = 600


def marker_environment(python: str) -> dict[str, str]:
    """Marker variables of CPython `python` (as uv's --python-version: 3.11 is 3.11.0) on Linux
    x86_64, the platform the network test resolves for."""
    full = python if python.count(".") == 2 else f"{python}.0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full,
        "os_name": "posix",
        "platform_machine": "x86_64",
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full,
        "python_version": ".".join(full.split(".")[:2]),
        "sys_platform": "linux",
    }


def lock_requirements() -> list[Requirement]:
    """constraints.txt's lines, without comments and uv's `# via` annotations."""
    lines = (line.split("#", 1)[0].strip() for line in LOCK.read_text().splitlines())
    return [Requirement(line) for line in lines if line]


def lock_pins(python: str) -> dict[str, list[str]]:
    """Each package's versions the lock pins on `python` (one each, if the lock is sound)."""
    environment = marker_environment(python)
    pins: dict[str, list[str]] = {}
    for requirement in lock_requirements():
        if requirement.marker is None or requirement.marker.evaluate(environment):
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{requirement} is not an exact pin"
            pins.setdefault(canonicalize_name(requirement.name), []).append(specifier.version)
    return pins


def uv_executable() -> str | None:
    """uv on PATH, else next to this interpreter (the course's virtual environment has it)."""
    found = shutil.which("uv")
    if found:
        return found
    beside = Path(sys.executable).parent / "uv"
    return str(beside) if beside.is_file() else None


def cannot_run(reason: str) -> NoReturn:
    """Skip where uv or the registry is out of reach, but fail under CI, which must run this."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the pins must be checked there)")
    pytest.skip(reason)


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_requires_python_allows_exactly_the_tested_versions() -> None:
    requires = SpecifierSet(pyproject()["project"]["requires-python"])
    allowed = tuple(f"3.{minor}" for minor in range(30) if requires.contains(f"3.{minor}"))
    assert allowed == PYTHONS
    for python in PYTHONS:  # any patch release, not only .0
        assert requires.contains(f"{python}.99"), python


def test_classifiers_name_the_tested_versions() -> None:
    prefix = "Programming Language :: Python :: "
    classifiers = pyproject()["project"].get("classifiers", [])
    named = tuple(c.removeprefix(prefix) for c in classifiers if re.fullmatch(r".*:: 3\.\d+", c))
    assert named == PYTHONS


def test_readme_names_the_tested_versions() -> None:
    readme = (REPO / "README.md").read_text()
    sentence = f"Python {', '.join(PYTHONS[:-1])} or {PYTHONS[-1]}"
    assert re.search(re.escape(sentence) + r"\b", readme), f"README.md does not say {sentence!r}"
    open_ended = re.findall(r"Python\s*(?:≥|>=)\s*3\.\d+", readme)
    assert not open_ended, f"README.md promises versions no test covers: {open_ended}"


def test_environment_yml_python_is_a_tested_version() -> None:
    environment = (REPO / "environment.yml").read_text()
    found = re.findall(r"^\s*-\s*python\s*=+\s*(3\.\d+)\s*$", environment, re.MULTILINE)
    assert found, "environment.yml pins no python=3.X"
    assert set(found) <= set(PYTHONS), found


@pytest.mark.parametrize("python", PYTHONS)
def test_lock_pins_each_package_once(python: str) -> None:
    pins = lock_pins(python)
    assert PROJECT not in pins, "the project itself is not pinned (--no-emit-package)"
    assert "make lock" in LOCK.read_text().split("\n", 3)[1], "the header says how to regenerate"
    several = {name: versions for name, versions in pins.items() if len(versions) > 1}
    assert not several, f"Python {python}: several pins for one package: {several}"
    for name in ("numpy", "tensorflow-cpu", "keras", "scipy"):
        assert name in pins, f"Python {python}: no pin for {name}"


@pytest.mark.slow
@pytest.mark.parametrize("python", PYTHONS)
def test_pins_resolve_from_wheels(python: str) -> None:
    uv = uv_executable()
    if uv is None:
        cannot_run("uv is not installed (it comes with the dev extra: make install)")
    command = [
        uv, "pip", "compile", "pyproject.toml", "--extra", "dev", "-c", str(LOCK),
        "--python-version", python, "--python-platform", "x86_64-manylinux_2_28",
        "--only-binary", ":all:", "--no-emit-package", PROJECT,
        "--no-header", "--no-annotate", "--quiet",
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=UV_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        cannot_run(f"uv did not resolve within {UV_TIMEOUT_S} s: is the registry reachable?")
    if result.returncode != 0 and OFFLINE.search(result.stderr):
        cannot_run(f"the package registry is unreachable: {result.stderr.strip()[-500:]}")
    assert result.returncode == 0, f"Python {python}: the pins do not resolve:\n{result.stderr}"

    resolved = {
        canonicalize_name(requirement.name): str(requirement.specifier).removeprefix("==")
        for requirement in map(Requirement, result.stdout.splitlines())
    }
    pinned = {name: versions[0] for name, versions in lock_pins(python).items()}
    assert resolved, result.stdout
    differ = {
        name: (version, pinned.get(name))
        for name, version in resolved.items()
        if pinned.get(name) != version
    }
    assert not differ, f"Python {python}: resolved (version, lock's pin) differ: {differ}"
    stale = sorted(set(pinned) - set(resolved))
    assert not stale, f"Python {python}: the lock pins what nothing installs (make lock): {stale}"
