"""The docs live in the repository and stay true: every document a file points to exists, no
file points outside the repository, and docs/architecture.md names every module (and no module
that is gone)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sdpo_agent", "sdpo_envs", "environments")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".txt", ".sh", ".cfg", ".yaml", ".yml"}
# What names a document of the project: a path under docs/, an upper-case page name (README.md),
# a relative Markdown link. Lower-case *.md names are files the jobs write (report.md), not docs.
DOC_REFERENCE = re.compile(r"(?<![\w./-])(docs/[\w./-]*\w|(?:[\w./-]*/)?[A-Z][A-Z_]*\.md)\b")
MARKDOWN_LINK = re.compile(r"\]\((?!https?:|#|mailto:)([^)#\s]+)")
# Raw reports copied from runs: their pictures stayed in the run's folder.
RAW_OUTPUTS = "bench/results/"
# Ways a file could lean on documents that only exist beside a checkout, never in a clone.
OUTSIDE = re.compile(r"\.\./shared|/ \"shared\"|\bSPEC\.md\b|\bSPEC §|\bALGORITHM\.md\b")


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [
        ROOT / name
        for name in listed
        if (Path(name).suffix in TEXT_SUFFIXES or Path(name).name == "Makefile")
        and not name.startswith(RAW_OUTPUTS)
        and (ROOT / name).is_file()
    ]


def _resolves(reference: str, source: Path) -> bool:
    """A reference resolves beside the file that makes it, from the repository root, or (for a
    bare name such as ``README.md``) to a file of that name in the folder or above it."""
    if (source.parent / reference).exists() or (ROOT / reference).exists():
        return True
    if "/" not in reference:
        folder = source.parent
        while folder != ROOT.parent:
            if (folder / reference).exists():
                return True
            folder = folder.parent
    return False


def dangling_references(path: Path, text: str) -> list[str]:
    """Every ``file:line: reference`` of ``text`` (the contents of ``path``) whose document is
    not in the repository."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        where = f"{path.relative_to(ROOT)}:{number}"
        found += [f"{where}: {m.group(0)}" for m in OUTSIDE.finditer(line)]
        references = DOC_REFERENCE.findall(line)
        if path.suffix == ".md":
            references += MARKDOWN_LINK.findall(line)
        found += [f"{where}: {ref}" for ref in references if not _resolves(ref, path)]
    return found


def test_no_file_points_to_a_document_outside_the_repository():
    found = [
        reference
        for path in _tracked_text_files()
        if path != Path(__file__).resolve()  # its probe names missing pages on purpose
        for reference in dangling_references(path, path.read_text(encoding="utf-8", errors="replace"))
    ]
    assert found == []


# The probe's outside pointers are assembled from parts, so this file names no such document itself.
_GONE_PAGE = "ALGORITHM" + ".md"
_OUTSIDE_FOLDER = ".." + "/shared"


def test_the_dangling_reference_check_catches_what_it_should():
    found = dangling_references(ROOT / "docs" / "probe.md", _PROBE)
    assert any(_GONE_PAGE in f for f in found)
    assert any(_OUTSIDE_FOLDER in f for f in found)
    assert any("docs/missing.md" in f for f in found)
    assert any("nowhere.md" in f for f in found)
    assert {f.rpartition(": ")[2] for f in found} == {
        _GONE_PAGE,
        _OUTSIDE_FOLDER,
        "docs/missing.md",
        "nowhere.md",
    }


_PROBE = f"""see {_GONE_PAGE} and {_OUTSIDE_FOLDER}/reference
the formulas: docs/algorithm.md, [the notation](algorithm.md) beside this page, README.md at the root
gone: docs/missing.md and [gone](nowhere.md); written by a job: runs/x/report.md
"""


def _modules() -> list[Path]:
    return sorted(
        path.relative_to(ROOT)
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if path.name != "__init__.py"
    )


def _architecture_index() -> dict[str, set[str]]:
    """folder -> module file names listed under its ``### `folder/` `` heading."""
    index: dict[str, set[str]] = {}
    folder = None
    for line in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8").splitlines():
        heading = re.match(r"### `([\w/]+)/`", line)
        if heading:
            folder = heading.group(1)
            index[folder] = set()
            continue
        row = re.match(r"\| `([\w.]+\.py)` \|", line)
        if row and folder is not None:
            index[folder].add(row.group(1))
    return index


def test_the_architecture_page_names_every_module():
    index = _architecture_index()
    missing = [str(m) for m in _modules() if m.name not in index.get(str(m.parent), set())]
    assert missing == [], "add a line to docs/architecture.md for each"


def test_the_architecture_page_names_no_module_that_is_gone():
    gone = [
        f"{folder}/{name}"
        for folder, names in _architecture_index().items()
        for name in sorted(names)
        if not (ROOT / folder / name).is_file()
    ]
    assert gone == []


@pytest.mark.parametrize("page", ["docs/algorithm.md", "docs/architecture.md"])
def test_the_readme_links_the_docs(page):
    assert f"({page})" in (ROOT / "README.md").read_text(encoding="utf-8")
