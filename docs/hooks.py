"""MkDocs hook: serve the repository's reports, study files, recipes and benchmarks beside the docs.

A study's generated report (``reports/<study>/index.md``) is the one home of its results, so the docs link to
it rather than copy it. The pages link the way GitHub resolves them, from ``docs/`` up into the repository
(``../reports/propagation/index.md``); this hook adds those folders' files to the site under the same paths
and rewrites such a link to the file's place in the site. A link to anything else outside ``docs/`` is left
as written, so that ``mkdocs build --strict`` still fails on it, as on any broken link inside ``docs/``.

The docstrings that the API page renders name objects with Sphinx roles (``:func:`build_model```); the page
shows them as code, without the role.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from mkdocs.structure.files import File, Files

#: The repository's folders whose files the site serves under the same paths.
SERVED = ("reports", "studies", "recipes", "benchmarks")

ROOT = Path(__file__).resolve().parent.parent

# A Sphinx role as mkdocstrings renders it from a docstring: :func:<code>~vsr.x.f</code>.
_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|attr|data|exc|obj|const):<code>~?([^<]*)</code>")

# The target of an inline Markdown link or image: ](target) or ](target#anchor), without a title.
_LINK = re.compile(r"\]\((?P<target>[^)\s#]+)(?P<anchor>#[^)\s]*)?\)")


def _served_files() -> list[str]:
    """The served files, as paths relative to the repository root (POSIX), skipping caches."""
    found = []
    for folder in SERVED:
        for path in sorted((ROOT / folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and not path.name.startswith("."):
                found.append(path.relative_to(ROOT).as_posix())
    return found


def on_files(files: Files, config) -> Files:
    for rel in _served_files():
        files.append(
            File(rel, src_dir=str(ROOT), dest_dir=config["site_dir"], use_directory_urls=config["use_directory_urls"])
        )
    return files


def on_page_markdown(markdown: str, page, config, files: Files) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    source = Path(page.file.abs_src_path).resolve()
    if not source.is_relative_to(docs_dir):  # a served file: its links are relative to its own folder already
        return markdown
    page_dir = PurePosixPath(page.file.src_uri).parent

    def rewrite(match: re.Match) -> str:
        target = match["target"]
        if "://" in target or target.startswith(("/", "mailto:")):
            return match[0]
        resolved = (source.parent / target).resolve()
        if resolved.is_relative_to(docs_dir) or not resolved.is_relative_to(ROOT):
            return match[0]
        rel = resolved.relative_to(ROOT).as_posix()
        if rel.split("/")[0] not in SERVED or files.get_file_from_path(rel) is None:
            return match[0]  # not served: mkdocs reports the link as not found
        up = len(page_dir.parts) if str(page_dir) != "." else 0
        return f"]({'../' * up}{rel}{match['anchor'] or ''})"

    return _LINK.sub(rewrite, markdown)


def on_page_content(html: str, page, config, files: Files) -> str:
    return _ROLE.sub(r"<code>\1</code>", html)
