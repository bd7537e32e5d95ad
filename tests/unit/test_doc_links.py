"""Links between the project's Markdown documents lead somewhere.

Every relative link with a fragment (``[x](../DECISIONS.md#some-heading)``, ``[x](#here)``)
in ``docs/``, ``README.md`` and ``monitoring/`` must name a file that exists and, in it, a
heading whose GitHub slug is the fragment or an HTML anchor (``<a id="…">``) with that id.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS = sorted(
    [*(REPO / "docs").rglob("*.md"), REPO / "README.md", *(REPO / "monitoring").rglob("*.md")]
)
LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ID = re.compile(r"<[a-zA-Z][^>]*\s(?:id|name)\s*=\s*[\"']([^\"']+)[\"']")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    out, fence = [], ""
    for line in text.splitlines():
        m = FENCE.match(line)
        if fence:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = ""
            continue
        if m:
            fence = m.group(1)
            continue
        out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text without markup, lower case, every character
    other than a letter, digit, space, ``-`` or ``_`` dropped, spaces turned into hyphens."""
    text = re.sub(r"!?\[((?:[^\]\\]|\\.)*)\]\([^)]*\)", r"\1", heading)  # links, images: text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(path.read_text(encoding="utf-8")):
        found.update(HTML_ID.findall(line))
        m = HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")  # GitHub numbers repeated headings
    return found


def fragment_links(path: Path) -> list[tuple[str, Path, str]]:
    """(link as written, target file, fragment) for each relative link with a fragment."""
    links = []
    for line in prose_lines(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)  # inline code is not a link
        for target in LINK.findall(line):
            if "#" not in target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                continue
            file_part, _, fragment = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            links.append((target, dest, fragment))
    return links


def test_slugs_follow_github() -> None:
    assert slug("D13 — The smoke harness runs the real pipeline") == (
        "d13--the-smoke-harness-runs-the-real-pipeline"
    )
    assert slug("Drill: practise on the simulator") == "drill-practise-on-the-simulator"
    assert slug("The `grinder gates` command") == "the-grinder-gates-command"
    assert slug("See [runbook 12](12_ACTIVE_REMEDIATION.md) too") == "see-runbook-12-too"


def test_the_documents_are_found_and_have_fragment_links() -> None:
    names = {p.relative_to(REPO).as_posix() for p in DOCS}
    assert {"docs/DECISIONS.md", "docs/runbooks/13_OPERATOR_CEREMONY.md", "README.md"} <= names
    targets = {t for p in DOCS for t, _, _ in fragment_links(p)}
    assert "../DECISIONS.md#adr-047--e2e-reconcileremediate-smoke-harness-lc-13" in targets


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_every_fragment_link_resolves(doc: Path) -> None:
    broken = []
    for target, dest, fragment in fragment_links(doc):
        if not dest.is_file():
            broken.append(f"{target}: no file {dest}")
        elif fragment not in anchors(dest):
            broken.append(f"{target}: no heading or anchor #{fragment} in {dest.name}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)
