"""Sphinx configuration of the rendered course (`make book`).

The book's source folder is the repository root and this folder holds only the configuration
(`sphinx-build -c book . OUT`), so every relative link of the README and the docs resolves as it
does on disk: `docs/results.md#...` becomes the page `docs/results.html#...`, a notebook link
becomes its page, an image stays an image. `include_patterns` keeps the book to the README, the
lessons, the solutions and the docs. The notebooks are rendered with the outputs they carry and
are never executed. The README is the front page: `book/toc.md` (the table of contents) is
appended to it as it is read, and the built `README.html` is also written as `index.html`.

Links to files that are not pages (a `.py`, a `.json`, `.ci/run`) become links to a copy of the
file in the built site (`_downloads/`), which a browser opens as text, offline. A link to a
folder goes to the page of its README.md (`docs/research/`), as GitHub shows a folder; a folder
the book has no page for (`published/`) keeps the link's text, unlinked.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
from pathlib import Path
from typing import Any

from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.transforms.post_transforms import SphinxPostTransform

BOOK = Path(__file__).resolve().parent

project = "Unpaired MRI contrast translation: a CycleGAN course"

extensions = ["myst_nb"]

root_doc = "README"
include_patterns = [
    "README.md",
    "notebooks/*.ipynb",
    "notebooks/solutions/*.ipynb",
    "docs/*.md",
    "docs/research/*.md",
    "data/README.md",
]
# Folders Sphinx need not walk at all (include_patterns filters files, these prune the walk).
exclude_patterns = [
    ".git",
    ".venv*",
    "**/.ipynb_checkpoints",
    "book/_build",
    "runs",
    "published",
    "mri_helpers",
    "mri_course",
    "tests",
    "**/__pycache__",
    "*.egg-info",
]

# The notebooks as committed: their outputs are the course run's, nothing is executed.
nb_execution_mode = "off"
nb_merge_streams = True
# Widgets (lesson 04's progress bars and slice viewer) are drawn from the state the notebook
# saved, by the widget manager myst-nb loads from its CDN: online only, like MathJax.

# The text as written (and as GitHub shows it): no curly quotes or dashes made from ' " --.
smartquotes = False
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
# Anchors for `page.md#a-heading` links, as GitHub makes them (levels 1 to 4).
myst_heading_anchors = 4

html_theme = "sphinx_book_theme"
html_title = "MRI contrast translation: a CycleGAN course"
html_theme_options = {
    "show_toc_level": 2,
    "use_download_button": False,
    "use_fullscreen_button": False,
}
html_show_sourcelink = False
html_copy_source = False  # no copy of each notebook under _sources/
html_last_updated_fmt = None


# `[text](some/folder/)` or `[text](some/folder/#anchor)` in Markdown: a link to a folder.
FOLDER_LINK = re.compile(
    r"\[(?P<text>[^\[\]]*)\]\((?P<folder>[^()\s#:]*/)(?P<anchor>#[^()\s]*)?\)"
)


def _folder_links(app: Sphinx, docname: str, source: list[str]) -> None:
    """A link to a folder goes to the folder's README.md where that is a page of the book, as
    GitHub shows a folder; a folder the site has no page for keeps the link's text alone."""
    here = Path(app.env.doc2path(docname)).parent
    srcdir = Path(app.srcdir).resolve()

    def rewrite(match: re.Match[str]) -> str:
        readme = (here / match["folder"] / "README.md").resolve()
        if readme.is_file() and readme.is_relative_to(srcdir):
            page = readme.relative_to(srcdir).with_suffix("").as_posix()
            if page in app.env.found_docs:
                return f"[{match['text']}]({match['folder']}README.md{match['anchor'] or ''})"
        return match["text"]

    source[0] = FOLDER_LINK.sub(rewrite, source[0])


class JupyterAnchors(SphinxPostTransform):
    """A link written for JupyterLab (`01_data_understanding.ipynb#Hidden-partners`: the heading's
    text, spaces as hyphens, case kept) goes to that heading's anchor in the book, which is
    GitHub's (`#hidden-partners`), so one link works in both."""

    default_priority = 8  # before MyST resolves the links (9)

    def run(self, **kwargs: Any) -> None:
        for node in self.document.findall(addnodes.pending_xref):
            ref_id = node.get("reftargetid")
            if node.get("reftype") != "myst" or node.get("refdomain") != "doc" or not ref_id:
                continue
            slugs = self.env.metadata.get(node["reftarget"], {}).get("myst_slugs", {})
            github = re.sub(r"[^\w\- ]", "", urllib.parse.unquote(ref_id).lower())
            if ref_id not in slugs and github in slugs:
                node["reftargetid"] = github


def _append_toc(app: Sphinx, docname: str, source: list[str]) -> None:
    """The front page is the README with the book's table of contents appended."""
    if docname == app.config.root_doc:
        app.env.note_dependency(str(BOOK / "toc.md"))  # an edited toc.md rebuilds the page
        source[0] += "\n\n" + (BOOK / "toc.md").read_text(encoding="utf-8")


def _index_html(app: Sphinx, exception: Exception | None) -> None:
    """`index.html` is the front page too, so the site opens at its folder's address."""
    if exception is None and app.builder.format == "html":
        out = Path(app.outdir)
        shutil.copyfile(out / f"{app.config.root_doc}.html", out / "index.html")


def setup(app: Sphinx) -> dict[str, bool]:
    app.add_post_transform(JupyterAnchors)
    app.connect("source-read", _folder_links)
    app.connect("source-read", _append_toc)
    app.connect("build-finished", _index_html)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
