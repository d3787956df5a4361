"""The HTML reports opened in a real headless Chromium (Debian's), offline, driven by Playwright.

The browser is the system's ``/usr/bin/chromium`` (``.ci/run`` installs it;
Playwright's own browser download is not used). The context is offline and
every request is recorded: a report must load completely from its one file.
The tests assert no console errors, every image loaded with a non-zero size,
the metastasis table has the run's rows, the embedded figure data equals the
run's tables, and a screenshot is not blank.
"""

import io
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import metacoop
from helpers.scenarios import SHORT_CLASSACTION
from metacoop.io.results import open_run
from metacoop.report import write_report
from metacoop.validation.runner import validate
from metacoop.validation.targets import load_targets

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: Flags for a root, offline, headless Chromium (no background connections to fail on).
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if not os.path.exists(CHROMIUM):
    # CI installs Chromium (.ci/run): there a missing browser is a failure, not a skip.
    if os.environ.get("CI"):
        raise RuntimeError(f"Chromium not found at {CHROMIUM}; .ci/run installs Debian's chromium")
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


class Opened:
    """A page opened offline, with its console errors and every URL it requested."""

    def __init__(self, browser, path):
        self.context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.errors, self.requests = [], []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(path.as_uri(), wait_until="load")

    def images(self):
        return self.page.evaluate("""() => Array.from(document.images).map(i => ({
            id: i.closest('figure') ? i.closest('figure').id : '', complete: i.complete,
            w: i.naturalWidth, h: i.naturalHeight, shown: i.getBoundingClientRect().width}))""")

    def data(self, name):
        return json.loads(self.page.evaluate(f"() => document.getElementById('data-{name}').textContent"))

    def close(self):
        self.context.close()


def assert_loaded_offline(opened):
    assert opened.errors == []
    assert all(u.startswith(("file:", "data:")) for u in opened.requests), opened.requests
    images = opened.images()
    assert images, "no images"
    for im in images:
        assert im["complete"] and im["w"] > 0 and im["h"] > 0 and im["shown"] > 0, im
    return images


def assert_not_blank(png: bytes):
    with Image.open(io.BytesIO(png)) as im:
        a = np.asarray(im.convert("RGB"), dtype=float)
    assert a.std() > 10, "the screenshot is blank"
    assert len(np.unique(a.reshape(-1, 3), axis=0)) > 50  # text, figures and colours, not one flat colour


@pytest.fixture(scope="module")
def run_report(tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "run"
    metacoop.simulate(metacoop.load_scenario("classaction", SHORT_CLASSACTION), out)
    return open_run(out), write_report(out)


def test_a_run_report_loads_offline_with_every_figure(browser, run_report):
    result, path = run_report
    opened = Opened(browser, path)
    try:
        images = assert_loaded_offline(opened)
        ids = {im["id"] for im in images}
        assert {"fig-growth", "fig-funnel", "fig-circulation", "fig-metastasis_composition", "fig-timeline",
                "fig-tissue_primary", "fig-tissue_lung", "fig-tissue_liver", "fig-animation"} <= ids
        # the metastasis table has the rows the run produced, in order
        rows = opened.page.eval_on_selector_all("#metastases tbody tr", "rs => rs.map(r => r.dataset.id)")
        assert rows == [str(m) for m in result.metastases["met_id"]]
        cells = opened.page.eval_on_selector_all("#metastases tbody tr td:nth-child(9)",
                                                 "tds => tds.map(td => td.textContent)")
        assert cells == [str(s) for s in result.metastases["size"]]
        # the funnel's bars, as drawn, are the run's counts at the last funnel time
        data = opened.data("funnel")
        f = result.funnel[result.funnel["time_h"] == result.funnel["time_h"].max()]
        for organ, heights in data["organs"].items():
            assert heights == f[f["organ"] == organ][data["stages"]].sum().astype(float).tolist()
        assert_not_blank(opened.page.screenshot(full_page=True))
    finally:
        opened.close()


def test_an_experiment_and_a_validation_page_load_offline(browser, tmp_path):
    targets = [t for t in load_targets() if t.id in ("KHA-1", "KHA-2b", "AND-1")]
    v = validate(targets, tmp_path / "v", replicates=2, workers=1)
    opened = Opened(browser, tmp_path / "v" / "validation.html")
    try:
        assert opened.errors == [] and all(u.startswith("file:") for u in opened.requests)
        rows = opened.page.eval_on_selector_all("#targets tbody tr", "rs => rs.map(r => r.dataset.id)")
        assert rows == v.table["id"].tolist() == ["AND-1", "KHA-1", "KHA-2b"]  # the targets file's order
        statuses = opened.page.eval_on_selector_all("#targets tbody td.status",
                                                    "tds => tds.map(t => t.textContent)")
        assert statuses == v.table["status"].tolist()
        assert_not_blank(opened.page.screenshot())
    finally:
        opened.close()
    exp_dir = next((tmp_path / "v" / "experiments").glob("khatib1999-*"))
    opened = Opened(browser, write_report(exp_dir))
    try:
        assert_loaded_offline(opened)
        rows = opened.page.eval_on_selector_all("#summary tbody tr", "rs => rs.map(r => r.dataset.id)")
        assert rows == ["reference"]
        assert_not_blank(opened.page.screenshot(full_page=True))
    finally:
        opened.close()
