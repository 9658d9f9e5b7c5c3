"""The rendered course (`make book`) as a reader's browser shows it.

One Sphinx build of the committed notebooks (never executed) into a temporary folder, served by
`http.server` on localhost, opened page by page in one headless Chromium session (selenium):

- every lesson and solution page has the notebook's title as its h1 and each of its `## `
  headings as an h2, and shows every figure the notebook's outputs hold as a loaded image;
- the front page is the README: its title, its `## ` headings, its images, and a table of
  contents that reaches every lesson and solution;
- every link on every page of the site that stays on the site leads to a page that loads
  (HTTP 200), and its `#fragment`, if any, is an id on that page. Links to other hosts are only
  collected; the browser resolves no other host (MathJax's CDN included), so the test runs
  offline.

Without Chromium or chromedriver the test is skipped, except in CI, where it fails.
"""

from __future__ import annotations

import functools
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow

# The build `make book` runs, into a folder of the test's own (source: the repository root,
# configuration: book/).
SPHINX = [sys.executable, "-m", "sphinx", "-b", "html", "-W", "--keep-going", "-q", "-c", "book"]
LESSONS = sorted((REPO / "notebooks").glob("0*.ipynb"))
SOLUTIONS = sorted((REPO / "notebooks" / "solutions").glob("0*_solutions.ipynb"))
NOTEBOOKS = LESSONS + SOLUTIONS


# --- what the sources say the pages must show ------------------------------------------------


def plain(markdown: str) -> str:
    """The text a Markdown heading shows: links by their text, no code or emphasis marks."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", markdown)
    return re.sub(r"[`*]", "", text).strip()


def headings(markdown: str, level: int) -> list[str]:
    """The headings of one level in Markdown text, outside fenced code blocks."""
    found, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced and line.startswith("#" * level + " "):
            found.append(plain(line[level + 1 :]))
    return found


def notebook_facts(path: Path) -> tuple[str, list[str], int]:
    """A notebook's title (its first Markdown cell's `# ` line), its `## ` headings and the
    number of PNG figures its outputs hold."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    markdown = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    titles = headings(markdown[0], 1)
    assert titles, f"{path.name}: the first Markdown cell has no `# ` title"
    sections = [h for text in markdown for h in headings(text, 2)]
    figures = sum(
        "image/png" in output.get("data", {})
        for cell in cells
        if cell["cell_type"] == "code"
        for output in cell.get("outputs", [])
    )
    return titles[0], sections, figures


def page_of(notebook: Path) -> str:
    """The site path of a notebook's page."""
    return notebook.relative_to(REPO).with_suffix(".html").as_posix()


# --- the site, its server and the browser ----------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("book") / "html"
    started = time.perf_counter()
    build = subprocess.run(
        [*SPHINX, ".", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, f"sphinx-build failed:\n{build.stdout}\n{build.stderr}"
    print(f"book built in {time.perf_counter() - started:.1f} s")
    return out


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def base_url(site: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=site))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def chromium_and_driver() -> tuple[str, str] | None:
    browser = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else None
    )
    return (browser, driver) if browser and driver else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    found = chromium_and_driver()
    if found is None:
        reason = "no Chromium or chromedriver (Debian: apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        # Offline: every host but the local server fails at once (MathJax's CDN, fonts).
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(found[1]), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


# What the browser reads from a page, in one script: headings without their "#" anchor links,
# the images of the article and of the notebook's outputs (with whether each really loaded), the
# links as absolute URLs.
READ_PAGE = """
const text = (e) => {
  const copy = e.cloneNode(true);
  copy.querySelectorAll('.headerlink').forEach((a) => a.remove());
  return copy.textContent.replace(/\\s+/g, ' ').trim();
};
const article = document.querySelector('article') || document.body;
const image = (i) => ({src: i.currentSrc || i.src, loaded: i.complete && i.naturalWidth > 0});
return {
  h1: [...article.querySelectorAll('h1')].map(text),
  h2: [...article.querySelectorAll('h2')].map(text),
  images: [...article.querySelectorAll('img')].map(image),
  outputImages: [...article.querySelectorAll('.cell_output img')].map(image),
  links: [...document.querySelectorAll('a[href]')].map((a) => a.href),
};
"""


def read_page(browser: Any, url: str) -> dict[str, Any]:
    """What the browser shows of `url`, once the page and all its images have loaded."""
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, 30).until(
        lambda b: (
            b.current_url.split("#")[0] == url
            and b.execute_script(
                "return document.readyState === 'complete'"
                " && [...document.images].every((i) => i.complete)"
            )
        )
    )
    page = browser.execute_script(READ_PAGE)
    page["url"] = url
    return page


@pytest.fixture(scope="module")
def pages(site: Path, base_url: str, browser: Any) -> dict[str, dict[str, Any]]:
    """Every page of the site as the browser shows it, by site path (one session for all)."""
    started = time.perf_counter()
    paths = sorted(
        p.relative_to(site).as_posix()
        for p in site.rglob("*.html")
        if not p.relative_to(site).parts[0].startswith("_")
    )
    read = {path: read_page(browser, base_url + path) for path in paths}
    print(f"{len(read)} pages read in the browser in {time.perf_counter() - started:.1f} s")
    return read


# --- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_page_shows_its_title_sections_and_figures(
    pages: dict[str, dict[str, Any]], notebook: Path
) -> None:
    title, sections, figures = notebook_facts(notebook)
    page = pages[page_of(notebook)]
    assert page["h1"] == [title]
    missing = [s for s in sections if s not in page["h2"]]
    assert not missing, f"{page_of(notebook)} lacks the sections {missing}"
    shown = page["outputImages"]
    assert len(shown) == figures, (
        f"{page_of(notebook)}: {len(shown)} figures, {figures} in outputs"
    )
    broken = [i["src"] for i in shown if not i["loaded"]]
    assert not broken, f"{page_of(notebook)}: figures that did not load: {broken}"


def test_the_front_page_is_the_readme_with_the_table_of_contents(
    pages: dict[str, dict[str, Any]], base_url: str
) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", readme)
    for path in ("index.html", "README.html"):
        page = pages[path]
        assert page["h1"] == headings(readme, 1)[:1]
        assert page["h2"] == headings(readme, 2)
        assert len(page["images"]) == len(images)
        assert all(i["loaded"] for i in page["images"]), page["images"]
        linked = {urllib.parse.urldefrag(link).url for link in page["links"]}
        unlinked = [p for p in map(page_of, NOTEBOOKS) if base_url + p not in linked]
        assert not unlinked, f"{path} does not link {unlinked}"


class Ids(html.parser.HTMLParser):
    """The ids (and <a name>s) of an HTML page: the targets a #fragment can name."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name == "id" or (tag == "a" and name == "name")):
                self.ids.add(value)


def test_no_link_is_broken(pages: dict[str, dict[str, Any]], base_url: str) -> None:
    host = urllib.parse.urlsplit(base_url).netloc
    targets: dict[str, set[str] | None] = {}  # URL -> ids on it, None if it does not load
    external: set[str] = set()
    broken: list[str] = []
    for path, page in pages.items():
        for link in page["links"]:
            parts = urllib.parse.urlsplit(link)
            if parts.scheme not in ("http", "https"):
                continue
            if parts.netloc != host:
                external.add(link)  # collected, never fetched
                continue
            url, fragment = urllib.parse.urldefrag(link)
            if url not in targets:
                try:
                    with urllib.request.urlopen(url, timeout=30) as response:
                        body = response.read()
                        loaded = response.status == 200
                except urllib.error.URLError:
                    loaded = False
                ids = None
                if loaded:
                    ids = set()
                    if url.endswith((".html", "/")):
                        parser = Ids()
                        parser.feed(body.decode("utf-8", errors="replace"))
                        ids = parser.ids
                targets[url] = ids
            ids = targets[url]
            if ids is None:
                broken.append(f"{path}: {link} does not load")
            elif fragment and urllib.parse.unquote(fragment) not in ids:
                broken.append(f"{path}: {link}: no id {fragment!r} on the page")
    print(f"{len(targets)} pages and files linked on the site, {len(external)} external links")
    assert targets, "no link on the site"
    assert not broken, "\n".join(sorted(set(broken)))
