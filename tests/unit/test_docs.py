"""The documentation site builds offline with `mkdocs build --strict`; its generated pages follow the code.

The model, configuration and command-line pages are generated at build time
by ``metacoop.docs_gen`` (through the hook ``docs/gen_pages.py``); these tests
read the built HTML, not the generator's Markdown, so they check what a reader
sees.
"""

import json
import math
import os
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest
import typer

from metacoop.cli import app
from metacoop.config.schema import CirculationConfig, CloneConfig, OrganConfig, SimulationConfig
from metacoop.docs_gen import md_text, rst_to_markdown, type_name
from metacoop.mechanisms import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


class _Tables(HTMLParser):
    """Heading ids, text and table rows (cell texts) of a page, each row with the heading it is under."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.chunks: list[str] = []
        self.rows: list[tuple[str | None, list[str]]] = []
        self._section = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("h1", "h2", "h3", "h4") and attrs.get("id"):
            self._section = attrs["id"]
            self.ids.add(attrs["id"])
        elif tag == "tr":
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.rows.append((self._section, self._row))
            self._row = None

    @property
    def text(self) -> str:
        """The page's text, whitespace collapsed."""
        return " ".join("".join(self.chunks).split())

    def handle_data(self, data):
        self.chunks.append(data)
        if self._cell is not None:
            self._cell.append(data)


def _page(site: Path, name: str) -> _Tables:
    parser = _Tables()
    parser.feed((site / name / "index.html").read_text(encoding="utf-8"))
    return parser


def _shown(description: str) -> str:
    """A description as the page shows it: code spans lose their back-quotes, whitespace is collapsed."""
    return " ".join(description.replace("`", "").split())


def _rows_by_key(page: _Tables, section: str | None = None) -> dict[str, list[str]]:
    return {row[0]: row for sec, row in page.rows if section is None or sec == section}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert time.perf_counter() - start < 120
    return out


@pytest.mark.slow
def test_site_has_every_page(site):
    for page in ("installation", "tutorial", "validation", "reference/model", "reference/configuration",
                 "reference/cli", "reference/api"):
        assert (site / page / "index.html").is_file(), page
    assert "LUZ-1" in (site / "validation" / "index.html").read_text(encoding="utf-8")
    api = _page(site, "reference/api")
    for name in ("metacoop.load_scenario", "metacoop.simulate", "metacoop.io.results.Result",
                 "metacoop.experiments", "metacoop.validation"):
        assert name in api.ids, name
    assert not (site / "gen_pages.py").exists(), "the hook must not be published as a page"


@pytest.mark.slow
def test_model_page_has_every_mechanism_with_its_params(site):
    page = _page(site, "reference/model")
    checked = 0
    for name, mech in REGISTRY.items():
        assert name in page.ids, f"no section for mechanism {name}"
        rows = _rows_by_key(page, name)
        for key, field in mech.Params.model_fields.items():
            assert key in rows, f"{name}.{key} missing from the model page"
            _, _, default, description = rows[key]
            assert description == _shown(field.description or ""), f"{name}.{key}"
            value = field.default
            if isinstance(value, bool):
                assert default == ("true" if value else "false"), f"{name}.{key}"
            elif isinstance(value, float):
                assert float(default) == value or (math.isnan(value) and math.isnan(float(default)))
            elif isinstance(value, int):
                assert int(default) == value, f"{name}.{key}"
            elif isinstance(value, str):
                assert json.loads(default) == value, f"{name}.{key}"
            else:
                continue
            checked += 1
        for source in mech.sources:
            assert " ".join(source.split()) in page.text, f"{name}: source {source!r} not shown"
    assert checked > 50


@pytest.mark.slow
def test_config_page_has_key_paths_with_units(site):
    page = _page(site, "reference/configuration")
    rows = _rows_by_key(page)
    for key in SimulationConfig.model_fields:
        assert key in rows, key
    transit = CirculationConfig.model_fields["transit_h"]
    assert rows["circulation.transit_h"][2] == "2.0" == repr(transit.default)
    assert rows["circulation.transit_h"][3] == transit.description
    assert rows["circulation.transit_h"][3].endswith(", h")
    arrest = OrganConfig.model_fields["arrest_probability"]
    assert rows["organs.<name>.arrest_probability"][1] == "float in [0, 1]"
    assert rows["organs.<name>.arrest_probability"][3] == arrest.description
    assert rows["organs.<name>.extravasation_rate_per_h"][2] == "inf"
    assert "1/h" in rows["organs.<name>.extravasation_rate_per_h"][3]
    assert rows["organs.<name>.vessels.normal"][2] == "10"  # the organ's default, not VesselsConfig's 8
    assert "µm²/h" in rows["clones.<name>.diffusion_um2_per_h"][3]
    assert rows["clones.<name>.cohesion"][3] == _shown(CloneConfig.model_fields["cohesion"].description)
    assert "primary.fields.<name>.diffusion_um2_per_h" in rows
    assert "injections.<i>.cells" in rows
    for name, mech in REGISTRY.items():
        for key in mech.Params.model_fields:
            assert f"mechanisms.{name}.{key}" in rows


@pytest.mark.slow
def test_cli_page_has_every_command(site):
    page = _page(site, "reference/cli")
    group = typer.main.get_command(app)
    names = [n for n, c in group.commands.items() if not getattr(c, "hidden", False)]
    assert "validate" in names
    for name in names:
        assert f"metacoop-{name}" in page.ids, f"no section for `metacoop {name}`"
    options = [row[0] for sec, row in page.rows if sec == "metacoop-validate"]
    assert "--doc <path>" in options and "-n, --replicates <int>" in options


def test_md_text_escapes_markdown_but_keeps_code():
    assert md_text("a_b * c [d] <e> | `x_y*z`") == r"a\_b \* c \[d\] &lt;e&gt; \| `x_y*z`"


def test_rst_to_markdown_roles_literals_and_blocks():
    doc = ":class:`~a.B` and ``x``, as::\n\n    y = 1\n      z\n\nend"
    assert rst_to_markdown(doc) == "`a.B` and `x`, as:\n\n```text\ny = 1\n  z\n```\n\nend"


def test_type_names_give_ranges():
    fields = CirculationConfig.model_fields
    assert type_name(fields["cluster_hazard_factor"].annotation, fields["cluster_hazard_factor"].metadata) \
        == "list (1 to 1000 items) of float in [0, 1]"
    assert type_name(fields["transit_distribution"].annotation) == 'one of "fixed", "exponential"'
