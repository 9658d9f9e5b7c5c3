"""Write the lessons' marked cells into `mri_helpers`, or check that they are there unchanged.

A lesson marks a code cell whose definitions later lessons use with a first line
`# @save MODULE` (d2l's `#@save`, with the module's name): `mri-course export-lessons` writes
every cell marked for a module, in lesson order, into `mri_helpers/MODULE.py`, each under a
comment naming the lesson and section that define it. The imports of the marked cells are
gathered at the top of the module (ruff sorts them and formats the file), so a lesson imports
what a cell needs where the learner reads it; an import from the module itself (what an
earlier lesson saved into it) is left out. `--check` writes nothing and fails when a module
differs from what the lessons would write: the package's copy is never edited by hand.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
PACKAGE = REPO / "mri_helpers"
MARK = re.compile(r"# ?@save (?P<module>[a-z_]+)\s*$")  # ruff writes `#@save` as `# @save`
HEADING = re.compile(r"^#{1,3} (.+)$", re.MULTILINE)

# Each exported module's docstring: what it holds. A module missing here cannot be exported.
MODULES = {
    "data": (
        "The course data as the lessons use it: slices, the two unpaired sets, reading the\n"
        "course zip, the phantom and the hidden partners (lesson 01)."
    ),
    "processing": (
        "Image processing: the slices as a tf.data.Dataset and the head mask (lesson 01);\n"
        "cleaning, geometry, intensities, augmentation, the held-out split and the tf.data\n"
        "pipeline (lesson 02)."
    ),
    "models": "The CycleGAN's networks: the U-Net generator and the PatchGAN discriminator.",
    "losses": "The CycleGAN's losses, each a small function of tensors.",
}


@dataclass(frozen=True)
class MarkedCell:
    """One `# @save` cell: where it is written and the code it holds."""

    module: str
    notebook: str
    section: str
    code: str


def marked_cells(notebooks: Path = NOTEBOOKS) -> list[MarkedCell]:
    """Every `# @save` cell of the lessons, in lesson order."""
    cells = []
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        section = path.stem
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "markdown":
                headings = HEADING.findall(cell.source)
                section = headings[-1] if headings else section
                continue
            first, _, code = cell.source.partition("\n")
            mark = MARK.match(first) if cell.cell_type == "code" else None
            if mark:
                cells.append(MarkedCell(mark["module"], path.stem, section, code.strip()))
    return cells


def module_text(module: str, cells: list[MarkedCell]) -> str:
    """The generated source of `mri_helpers/<module>.py` from its marked cells."""
    if module not in MODULES:
        raise SystemExit(f"# @save {module}: no such module; add it to MODULES in {__name__}")
    imports, parts = [], []
    for cell in cells:
        body = []
        for node in ast.parse(cell.code).body:
            segment = ast.get_source_segment(cell.code, node, padded=False)
            target = imports if isinstance(node, ast.Import | ast.ImportFrom) else body
            if getattr(node, "module", None) == f"mri_helpers.{module}":
                continue  # an earlier lesson's part of this very module
            if target is imports and segment not in imports:
                imports.append(segment)
            elif target is body:
                body.append(_with_comments(cell.code, node, segment))
        if body:
            where = f"# Defined in {cell.notebook}, {cell.section!r}."
            parts.append(where + "\n" + "\n\n\n".join(body))
    header = (
        f'"""{MODULES[module]}\n\n'
        "Generated from the lessons' `# @save` cells by `mri-course export-lessons`: edit the\n"
        'lesson, then run it (never this file).\n"""\n\n'
        "from __future__ import annotations\n\n"
    )
    return _formatted(header + "\n".join(imports) + "\n\n\n" + "\n\n\n".join(parts) + "\n")


def _with_comments(code: str, node: ast.stmt, segment: str) -> str:
    """A statement's source with the comment lines right above it (and its decorators)."""
    lines = code.splitlines()
    first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])]) - 1
    start = first
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    end = node.end_lineno
    return "\n".join(lines[start:end])


def _formatted(text: str) -> str:
    """`text` with its imports sorted and formatted by ruff, as `make format` would."""
    ruff = [sys.executable, "-m", "ruff"]
    config = ["--config", str(REPO / "pyproject.toml"), "--stdin-filename", "generated.py"]
    sort = [*ruff, "check", "--select", "I", "--fix", "--quiet", "--exit-zero", *config, "-"]
    # noqa: S603 below: fixed argument lists, no shell; the text goes in on stdin.
    text = subprocess.run(sort, input=text, capture_output=True, text=True, check=True).stdout  # noqa: S603
    fmt = [*ruff, "format", "--quiet", *config, "-"]
    return subprocess.run(fmt, input=text, capture_output=True, text=True, check=True).stdout  # noqa: S603


def exported_modules(notebooks: Path = NOTEBOOKS) -> dict[str, str]:
    """Each exported module's name and generated source."""
    cells = marked_cells(notebooks)
    names = sorted({c.module for c in cells}, key=list(MODULES).index)
    return {name: module_text(name, [c for c in cells if c.module == name]) for name in names}


def differences(notebooks: Path = NOTEBOOKS, package: Path = PACKAGE) -> list[str]:
    """The modules whose file differs from the lessons' marked cells, or is missing."""
    wanted = exported_modules(notebooks)
    stale = []
    for name, text in wanted.items():
        path = package / f"{name}.py"
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            stale.append(name)
    stale += [name for name in MODULES if name not in wanted and (package / f"{name}.py").exists()]
    return stale


def export(check: bool = False) -> int:
    """Write (or with `check`, compare) the exported modules; 0 when the package matches."""
    if check:
        stale = differences()
        for name in stale:
            print(
                f"mri_helpers/{name}.py differs from the lessons' '# @save {name}' cells: edit "
                "the lesson, not the module, then run `mri-course export-lessons`.",
                file=sys.stderr,
            )
        return 1 if stale else 0
    for name, text in exported_modules().items():
        (PACKAGE / f"{name}.py").write_text(text, encoding="utf-8")
        print(f"wrote mri_helpers/{name}.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(export(check="--check" in sys.argv[1:]))
