"""MkDocs hook: add the reference pages generated from the code to the site at build time.

Listed under ``hooks:`` in ``mkdocs.yml``. :func:`metacoop.docs_gen.pages`
builds the model, configuration and command-line pages from the mechanism
registry, the scenario schema and the typer app, so they are never stored in
the repository and never drift. Under ``mkdocs serve`` they are generated in a
fresh interpreter on every rebuild, so that edits to the code show up.
"""

import json
import subprocess
import sys

from mkdocs.structure.files import File

_fresh = False


def on_startup(command, dirty):
    """Remember whether this is a live server, whose rebuilds must see edited code."""
    global _fresh
    _fresh = command == "serve"


def on_files(files, config):
    """Add every generated page to the site's files."""
    if _fresh:
        code = "import json, sys; from metacoop.docs_gen import pages; json.dump(pages(), sys.stdout)"
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
        generated = json.loads(out.stdout)
    else:
        from metacoop.docs_gen import pages

        generated = pages()
    for path, text in generated.items():
        files.append(File.generated(config, path, content=text))
    return files
