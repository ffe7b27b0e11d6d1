"""The rendered report: Quarto's HTML read in headless Chromium, and the PDF profile's xelatex log.

Needs `quarto` (../shared/tools/quarto/install.sh, or the user's), Debian's `chromium` and
`chromium-driver` (driven by selenium), and XeLaTeX with the DejaVu fonts. CI installs all of
them (.ci/run), so under CI=true a missing tool fails the test; elsewhere the test skips and
names the tool. The report is rendered from a copy of report/ in a temp folder (reading the
repository's results/ through EMOTION_HEADS_ROOT), so a test run never writes into report/.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import analysis.report as rep

REPO = Path(__file__).resolve().parents[1]
REPORT = REPO / "report"
CI = os.environ.get("CI") == "true"
# Flags that let Chromium run headless as root in a container with no network.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)
WINDOW = (1280, 1000)  # a laptop browser window, CSS px
MAX_OVERFULL_PT = 10.0


def need(tool: str, what: str) -> str:
    """The tool's path; missing fails under CI (which installs it) and skips elsewhere."""
    path = shutil.which(tool)
    if path is None:
        msg = f"no `{tool}` on PATH ({what})"
        if CI:
            pytest.fail(f"{msg}: CI installs it in .ci/run, so this is a broken CI environment")
        pytest.skip(f"{msg}; the report's chunks and inline expressions run without it in tests/test_report.py")
    return path


def render(tmp: Path, *args: str) -> Path:
    """`quarto render` of a copy of report/ (only the sources) under `tmp`; returns the copy."""
    quarto = need("quarto", "install it with ../shared/tools/quarto/install.sh")
    report = tmp / "report"
    shutil.copytree(REPORT, report, ignore=shutil.ignore_patterns(
        "_site", ".quarto", "*_files", "*.ipynb", "index.tex", "index.log", "index.aux", "index.toc", "index.out",
    ))
    env = dict(os.environ, QUARTO_PYTHON=sys.executable, **{rep.ROOT_ENV: str(REPO)})
    proc = subprocess.run([quarto, "render", str(report), *args], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return report


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """report/_site rendered to HTML, then copied alone to a folder of its own: what gets published."""
    tmp = tmp_path_factory.mktemp("render_html")
    report = render(tmp, "--to", "html")
    site = tmp / "published"
    shutil.copytree(report / "_site", site)
    return site / "index.html"


def test_quarto_renders_html(published: Path) -> None:
    html = published.read_text()
    summary = json.loads((REPO / "results" / "summary.json").read_text())
    assert "{python}" not in html
    r = rep.load_results(REPO)
    e = r.emotions[0]
    eff = {f: summary[f"{r.primary}.{e}.ablation.confirmation.emotion_score.{f}"] for f in ("mean", "ci_low", "ci_high", "p")}
    assert rep.fmt_effect(eff) in html


def test_html_is_self_contained(published: Path) -> None:
    """Every image, script and style sheet is embedded: the page needs no file beside it and no CDN."""
    from html.parser import HTMLParser

    refs: list[str] = []

    class Resources(HTMLParser):  # script bodies are data to it, so JS strings are not tags
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            a = dict(attrs)
            if tag in ("img", "script") and a.get("src") is not None:
                refs.append(a["src"] or "")
            if tag == "link" and a.get("href") is not None:
                refs.append(a["href"] or "")

    assert list(published.parent.iterdir()) == [published]
    Resources().feed(published.read_text())
    assert len(refs) >= 10, "fewer img, script and link elements than the page has"
    outside = [u[:80] for u in refs if not u.startswith("data:")]
    assert outside == []


# What the page looks like in the browser, collected in one script: every check below reads it.
PAGE_SCRIPT = r"""
const body = document.body.innerText;
const rect = e => e.getBoundingClientRect();
const caption = f => (f.querySelector(':scope > figcaption') || {innerText: ''}).innerText.trim();
const floats = kind => [...document.querySelectorAll('figure.quarto-float-' + kind)].map(f => ({
  id: f.closest('.quarto-float[id]') ? f.closest('.quarto-float[id]').id : f.parentElement.id,
  caption: caption(f),
}));
const scrolls = e => { for (let p = e.parentElement; p; p = p.parentElement) {
  const o = getComputedStyle(p).overflowX; if (o === 'auto' || o === 'scroll' || o === 'hidden') return true; }
  return false; };
const page = document.documentElement.clientWidth;
return {
  images: [...document.images].map(i => ({ok: i.complete && i.naturalWidth > 0, natural: i.naturalWidth,
                                          shown: rect(i).width, fig: !!i.closest('figure.quarto-float-fig')})),
  figures: floats('fig'),
  tables: floats('tbl'),
  bare_tables: [...document.querySelectorAll('main table')].filter(t => !t.closest('figure.quarto-float-tbl')).length,
  xrefs: [...document.querySelectorAll('a.quarto-xref')].map(a => ({href: a.getAttribute('href'), text: a.innerText.trim()})),
  ids: [...document.querySelectorAll('[id]')].map(e => e.id),
  math: [...document.querySelectorAll('span.math')].map(m => ({katex: !!m.querySelector('.katex'),
                                                                error: !!m.querySelector('.katex-error'),
                                                                text: m.innerText.slice(0, 40)})),
  errors: document.querySelectorAll('.cell-output-stderr, .cell-output-error').length,
  raw: (body.match(/\{python\}|Traceback|\w+Error\b|\?@[\w-]+|@(?:fig|tbl)-[\w-]+/g) || []),
  page: page, scroll_width: document.documentElement.scrollWidth,
  too_wide: [...document.querySelectorAll('main *')].filter(e => rect(e).width > 0 && rect(e).right > page + 1 && !scrolls(e))
             .map(e => e.tagName + '#' + e.id + '.' + e.className + ' ' + Math.round(rect(e).right)),
};
"""


@pytest.fixture(scope="module")
def page(published: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The published page opened in headless Chromium: the PAGE_SCRIPT facts, and a full-page screenshot."""
    chromium = need("chromium", "Debian: apt-get install chromium chromium-driver")
    driver_path = need("chromedriver", "Debian: apt-get install chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    tmp = tmp_path_factory.mktemp("browser")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    try:
        driver.get(published.as_uri())
        # KaTeX typesets on DOMContentLoaded; images decode after load.
        WebDriverWait(driver, 60).until(lambda d: d.execute_script(
            "return document.readyState === 'complete' && [...document.images].every(i => i.complete)"))
        facts = driver.execute_script(PAGE_SCRIPT)
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        facts["screenshot"] = tmp / "report-full-page.png"
        facts["screenshot"].write_bytes(base64.b64decode(shot["data"]))
        print(f"full-page screenshot: {facts['screenshot']}")
    finally:
        driver.quit()
    return facts


def test_browser_every_image_loads_and_is_a_figure(page: dict[str, Any]) -> None:
    images = page["images"]
    assert len(images) >= 8  # heatmap, top heads, units, ablation, patching, cumulative, attention, comparison
    assert [i for i in images if not i["ok"]] == []
    assert [i for i in images if not i["fig"]] == []


def test_browser_no_raw_code_or_error_output(page: dict[str, Any]) -> None:
    assert page["raw"] == []
    assert page["errors"] == 0


def test_browser_figures_and_tables_numbered_and_referenced(page: dict[str, Any]) -> None:
    for kind, word in (("figures", "Figure"), ("tables", "Table")):
        floats = page[kind]
        numbers = [int(m.group(1)) if (m := re.match(rf"{word}\s(\d+):", f["caption"])) else None for f in floats]
        assert numbers == list(range(1, len(floats) + 1)), (kind, [f["caption"][:40] for f in floats])
    assert page["bare_tables"] == 0, "a table without a numbered caption"
    ids = set(page["ids"])
    xrefs = page["xrefs"]
    assert xrefs, "no cross-reference in the text"
    unresolved = [x for x in xrefs if x["href"][:1] != "#" or x["href"][1:] not in ids
                  or not re.fullmatch(r"(Figure|Table)\s\d+", x["text"])]
    assert unresolved == []
    referenced = {x["href"][1:] for x in xrefs}
    unreferenced = [f["id"] for kind in ("figures", "tables") for f in page[kind] if f["id"] not in referenced]
    assert unreferenced == [], "figures or tables the text never points to"


def test_browser_math_rendered_offline(page: dict[str, Any]) -> None:
    math = page["math"]
    assert len(math) >= 5
    assert [m["text"] for m in math if not m["katex"] or m["error"]] == []


def test_browser_nothing_wider_than_the_page(page: dict[str, Any]) -> None:
    assert page["scroll_width"] <= page["page"]
    assert page["too_wide"] == []


def test_browser_figures_legible(page: dict[str, Any]) -> None:
    """The stage PNGs are drawn at 150 dpi with text of at least 8 pt; shown at less than half
    their pixel width, 8 pt becomes < 8 CSS px, which no reader can read."""
    small = [i for i in page["images"] if i["shown"] < 0.5 * i["natural"]]
    assert small == [], [(i["natural"], round(i["shown"])) for i in small]


# --- PDF --------------------------------------------------------------------------------------


def test_pdf_has_every_glyph_and_no_overfull_box(tmp_path: Path) -> None:
    need("xelatex", "Debian: texlive-xetex and friends, see report/_quarto-pdf.yml")
    report = render(tmp_path, "--profile", "pdf", "--to", "pdf")
    pdf = report / "_site" / "index.pdf"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    log = (report / "index.log").read_text(errors="replace")  # latex-clean: false keeps it
    missing = sorted(set(re.findall(r"Missing character: There is no (.+?) in font", log)))
    assert missing == [], "glyphs the PDF's fonts lack (xelatex drops them)"
    overfull = [float(x) for x in re.findall(r"Overfull \\hbox \((\d+(?:\.\d+)?)pt too wide\)", log)]
    assert max(overfull, default=0.0) <= MAX_OVERFULL_PT, sorted(overfull)[-5:]


def test_stage_figures_keep_8pt_text_in_the_pdf() -> None:
    """Every figure the report shows is drawn at 150 dpi with text of at least 9 pt (analysis.plots.style
    ANNOT_PT); the PDF scales a figure wider than its text width (A4, 2 cm margins: 6.69 in)
    down to it, and 9 pt stays >= 8 pt only if the figure is at most 6.69 * 9 / 8 = 7.53 in wide."""
    from PIL import Image

    from analysis.plots.style import ANNOT_PT, DPI

    text_width_in = (21.0 - 2 * 2.0) / 2.54
    max_px = DPI * text_width_in * ANNOT_PT / 8
    r = rep.load_results(REPO)
    folders = [REPO / "results" / r.profile / "plots" / kind / m for kind in ("heads", "attention") for m in r.models]
    pngs = [p for f in folders for p in sorted(f.glob("*.png"))] + [REPO / "results" / r.profile / "plots/models/heatmaps.png"]
    assert len(pngs) >= 8
    wide = {p.name: Image.open(p).size[0] for p in pngs if Image.open(p).size[0] > max_px}
    assert wide == {}, f"wider than {max_px:.0f} px"
