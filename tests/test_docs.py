"""The README and docs/ hold together: a short README, links that resolve inside the repository.

* README.md has at most ``README_MAX_LINES`` lines (a newcomer reads it in five minutes).
* Every markdown link in README.md and docs/*.md is relative and resolves to a file or folder of
  the repository; an anchor after ``#`` must name a heading of its target (GitHub's slugs).
* Nothing points outside the repository: no http(s) URL anywhere (papers are cited as author,
  title, venue), no link with a scheme or an absolute path, and no ``../`` path, in a link or in
  the text, that climbs above the repository root.
* Every docs/*.md is linked from README.md.

Each check is a function of a repository root, run on the real one and on broken copies in
``tmp_path``, so each is seen to fail.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 200

FENCE = re.compile(r"^\s{0,3}(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]*)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]*)>")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")
URL = re.compile(r"https?://|www\.", re.IGNORECASE)
PARENT_PATH = re.compile(r"(?<![\w.])((?:\.\./)+)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


def doc_files(root: Path) -> list[Path]:
    """README.md and every docs/*.md under ``root``."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code spans removed."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(CODE_SPAN.sub("", line))
    return out


def links(text: str) -> list[str]:
    """Every link target of a markdown text: inline links and images, reference definitions and
    autolinks, outside code."""
    found = []
    for line in _prose_lines(text):
        found += INLINE_LINK.findall(line)
        found += AUTOLINK.findall(line)
        match = REFERENCE_DEF.match(line)
        if match:
            found.append(match.group(1))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings (repeated slugs get -1, -2, ... as on GitHub)."""
    seen: dict[str, int] = {}
    out = set()
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            base = slug(match.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def _inside(path: Path, root: Path) -> bool:
    try:
        path.relative_to(root)
    except ValueError:
        return False
    return True


def link_problems(root: Path) -> list[str]:
    """Every link of README.md and docs/*.md that is not relative, leaves ``root``, names no file
    of the repository, or names an anchor its target lacks."""
    root = root.resolve()
    problems = []
    for doc in doc_files(root):
        name = doc.relative_to(root).as_posix()
        for target in links(doc.read_text(encoding="utf-8")):
            where = f"{name}: link ({target})"
            if not target:
                problems.append(f"{where} is empty")
                continue
            if SCHEME.match(target) or target.startswith("//"):
                problems.append(f"{where} is not a relative link")
                continue
            if target.startswith("/"):
                problems.append(f"{where} is an absolute path")
                continue
            file_part, _, anchor = target.partition("#")
            resolved = (doc.parent / unquote(file_part)).resolve() if file_part else doc
            if not _inside(resolved, root):
                problems.append(f"{where} points outside the repository")
            elif not resolved.exists():
                problems.append(f"{where} names no file of the repository")
            elif anchor and resolved.suffix == ".md" and unquote(anchor) not in anchors(resolved):
                problems.append(f"{where}: {resolved.name} has no heading with the anchor #{anchor}")
    return problems


def outside_references(root: Path) -> list[str]:
    """URLs anywhere in README.md and docs/*.md, code included, and ``../`` paths that climb above
    ``root`` from the file's own folder."""
    root = root.resolve()
    problems = []
    for doc in doc_files(root):
        name = doc.relative_to(root).as_posix()
        depth = len(doc.parent.relative_to(root).parts)
        for number, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1):
            if URL.search(line):
                problems.append(f"{name}:{number}: a web address (cite papers by author, title, venue)")
            for ups in PARENT_PATH.findall(line):
                if ups.count("../") > depth:
                    problems.append(f"{name}:{number}: a path climbs out of the repository ({ups}...)")
    return problems


def unlinked_docs(root: Path) -> list[str]:
    """docs/*.md files that README.md does not link to."""
    root = root.resolve()
    readme = root / "README.md"
    linked = {(root / unquote(t.partition("#")[0])).resolve()
              for t in links(readme.read_text(encoding="utf-8"))
              if t.partition("#")[0] and not SCHEME.match(t) and not t.startswith("/")}
    return [p.relative_to(root).as_posix() for p in sorted((root / "docs").glob("*.md")) if p.resolve() not in linked]


def readme_lines(root: Path) -> int:
    return len((root / "README.md").read_text(encoding="utf-8").splitlines())


# --- the repository ---------------------------------------------------------------------------------


def test_readme_is_short():
    assert readme_lines(ROOT) <= README_MAX_LINES


def test_every_link_is_relative_and_resolves():
    assert doc_files(ROOT)[1:], "docs/ holds no markdown file"
    assert link_problems(ROOT) == []


def test_nothing_points_outside_the_repository():
    assert outside_references(ROOT) == []


def test_every_doc_is_linked_from_the_readme():
    assert unlinked_docs(ROOT) == []


# --- the checks fail where they should ---------------------------------------------------------------


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """README.md and docs/ copied into ``tmp_path``, with the repository files they link to."""
    root = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", root / "docs")
    shutil.copy2(ROOT / "README.md", root / "README.md")
    for doc in doc_files(root):
        for target in links(doc.read_text(encoding="utf-8")):
            file_part = unquote(target.partition("#")[0])
            source = (ROOT / doc.parent.relative_to(root) / file_part).resolve()
            if file_part and source.is_file() and _inside(source, ROOT) and not _inside(source, ROOT / "docs"):
                dest = root / source.relative_to(ROOT)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, dest)
    assert link_problems(root) == [] and outside_references(root) == [] and unlinked_docs(root) == []
    return root


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + text, encoding="utf-8")


def test_a_long_readme_fails(copy: Path):
    _append(copy / "README.md", "line\n" * (README_MAX_LINES + 1 - readme_lines(copy)))
    assert readme_lines(copy) == README_MAX_LINES + 1


@pytest.mark.parametrize("doc, text, expected", [
    ("README.md", "See [the paper](https://example.org/paper.pdf).\n", "not a relative link"),
    ("README.md", "See <https://example.org>.\n", "not a relative link"),
    ("README.md", "[design]: http://example.org/DESIGN.md\n", "not a relative link"),
    ("README.md", "Mail [us](mailto:someone@example.org).\n", "not a relative link"),
    ("README.md", "The contracts are in [DESIGN](../shared/DESIGN.md).\n", "outside the repository"),
    ("docs/safety.md", "See [DESIGN](../../shared/DESIGN.md).\n", "outside the repository"),
    ("docs/safety.md", "See [the root](/etc/passwd).\n", "absolute path"),
    ("docs/safety.md", "See [missing](missing.md).\n", "names no file"),
    ("docs/safety.md", "See [the README](README.md), from docs/.\n", "names no file"),
    ("README.md", "![figure](docs/figure.png)\n", "names no file"),
    ("README.md", "[ref]: docs/nothing-here.md\n", "names no file"),
    ("README.md", "See [a heading](docs/safety.md#no-such-heading).\n", "no heading with the anchor"),
    ("docs/safety.md", "See [here](#no-such-heading).\n", "no heading with the anchor"),
])
def test_bad_links_fail(copy: Path, doc: str, text: str, expected: str):
    _append(copy / doc, "\n" + text)
    problems = link_problems(copy)
    assert problems and all(expected in p for p in problems), problems


def test_links_in_code_are_not_links(copy: Path):
    _append(copy / "README.md", "\n`[x](missing.md)`\n\n```\n[y](missing.md)\n```\n")
    assert link_problems(copy) == []


@pytest.mark.parametrize("doc, text", [
    ("README.md", "The contracts are in `../shared/DESIGN.md`.\n"),
    ("README.md", "```\ncat ../shared/DESIGN.md\n```\n"),
    ("docs/layout.md", "Read `../../shared/DESIGN.md`.\n"),
    ("docs/benchmarks.md", "Lian et al., https://www.ijcai.org/proceedings/2023\n"),
    ("README.md", "See www.example.org for more.\n"),
])
def test_references_outside_the_repository_fail(copy: Path, doc: str, text: str):
    _append(copy / doc, "\n" + text)
    assert outside_references(copy)


def test_a_parent_path_inside_the_repository_is_fine(copy: Path):
    _append(copy / "docs/layout.md", "\nThe Makefile is `../Makefile`; see [the README](../README.md).\n")
    assert outside_references(copy) == [] and link_problems(copy) == []


def test_a_doc_the_readme_does_not_link_fails(copy: Path):
    (copy / "docs" / "orphan.md").write_text("# Orphan\n", encoding="utf-8")
    assert unlinked_docs(copy) == ["docs/orphan.md"]


def test_a_link_only_from_another_doc_does_not_count(copy: Path):
    (copy / "docs" / "orphan.md").write_text("# Orphan\n", encoding="utf-8")
    _append(copy / "docs" / "safety.md", "\nSee [the orphan](orphan.md).\n")
    assert unlinked_docs(copy) == ["docs/orphan.md"]


def test_slugs_follow_github():
    assert slug("`model.net`: lava-dl netx") == "modelnet-lava-dl-netx"
    assert slug("`simulate --backend lava`: our Lava processes, not `model.net`") == \
        "simulate---backend-lava-our-lava-processes-not-modelnet"
    assert slug("Set-up: two commands") == "set-up-two-commands"
    assert slug("The paper's networks") == "the-papers-networks"
