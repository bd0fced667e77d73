"""The code's citations of the project's documentation point at documents and sections that exist.

Docstrings and comments cite the protocol reference as ``docs/protocol.md §5.10`` (or
``§12 #7`` for an open question). Users get only this repository, so a citation of a document
kept outside it (the working notes' protocol, design and test-vector files, or any path into
their shared folder: see ``OUTSIDE``) is an error, and so is a section number that
docs/protocol.md does not have. In a file that cites docs/protocol.md, a bare ``§5.3`` means
that document too; a ``§`` elsewhere must say which document it means (only a manual's
sections may stand alone).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROTOCOL_DOC = ROOT / "docs" / "protocol.md"
SCANNED = ("ophyd_servomex", "tests", "benchmarks", "example_plans")
"""Folders whose ``.py`` files are checked."""

# Spelled in pieces so that this file does not cite them itself.
OUTSIDE = (
    "PROTOCOL" + ".md",
    "DESIGN" + ".md",
    "VECTORS" + ".md",
    ".." + "/shared",
    "/work" + "/shared",
)
"""Documents and paths that live outside the repository."""

CITED_DOC = "docs/protocol.md"
_SECTION = re.compile(r"§(\d+(?:\.\d+)*)(?:\s*#(\d+))?")
_HEADING = re.compile(r"^#{2,4} (\d+(?:\.\d+)*)\.? \S")
_QUESTION_ROW = re.compile(r"^\| (\d+) \|")
_OTHER_DOCUMENT = re.compile(r"(?i)manual\s*$")
"""Text just before a ``§`` that says it is a section of another document."""


def python_files() -> list[Path]:
    """Every ``.py`` file in the scanned folders, in a stable order."""
    return sorted(p for folder in SCANNED for p in (ROOT / folder).rglob("*.py"))


def doc_sections(text: str) -> tuple[set[str], set[int]]:
    """The numbered section headings of a protocol reference, and its open-question numbers.

    Headings are ``## 5. Title`` / ``### 5.10 Title``; open questions are the numbered rows
    (``| 7 | …``) of section 12's table.
    """
    sections: set[str] = set()
    questions: set[int] = set()
    in_questions = False
    for line in text.splitlines():
        heading = _HEADING.match(line)
        if heading:
            sections.add(heading.group(1))
            in_questions = heading.group(1) == "12"
            continue
        if line.startswith("## "):
            in_questions = False
        row = _QUESTION_ROW.match(line)
        if in_questions and row:
            questions.add(int(row.group(1)))
    return sections, questions


def outside_citations(text: str) -> Iterator[tuple[int, str]]:
    """(line number, cited name) for each mention of a document kept outside the repository."""
    for number, line in enumerate(text.splitlines(), 1):
        for name in OUTSIDE:
            if name in line:
                yield number, name


def section_citations(text: str) -> Iterator[tuple[int, str, int | None]]:
    """(line number, section, open question or None) for each ``§`` meaning docs/protocol.md.

    Without a docs/protocol.md citation in the text, a ``§`` that is not a manual's is
    reported with the section ``"?"`` followed by its number, since it names no document.
    """
    anchored = CITED_DOC in text
    for number, line in enumerate(text.splitlines(), 1):
        for match in _SECTION.finditer(line):
            if _OTHER_DOCUMENT.search(line[: match.start()]):
                continue
            question = int(match.group(2)) if match.group(2) else None
            section = match.group(1) if anchored else "?" + match.group(1)
            yield number, section, question


def citation_problems(
    text: str, sections: set[str], questions: set[int]
) -> Iterator[tuple[int, str]]:
    """(line number, problem) for every citation in ``text`` that points nowhere."""
    for number, name in outside_citations(text):
        yield number, f"cites {name}, which is not in the repository"
    for number, section, question in section_citations(text):
        if section.startswith("?"):
            yield number, f"§{section[1:]} names no document (cite {CITED_DOC} §{section[1:]})"
        elif section not in sections:
            yield number, f"{CITED_DOC} has no section §{section}"
        elif question is not None and (section != "12" or question not in questions):
            yield number, f"{CITED_DOC} §12 has no open question #{question}"


@pytest.fixture(scope="module")
def protocol_doc() -> tuple[set[str], set[int]]:
    return doc_sections(PROTOCOL_DOC.read_text(encoding="utf-8"))


def test_protocol_doc_numbers_its_sections_once() -> None:
    numbers = [
        m.group(1)
        for line in PROTOCOL_DOC.read_text(encoding="utf-8").splitlines()
        if (m := _HEADING.match(line))
    ]
    assert len(numbers) == len(set(numbers)), sorted(n for n in numbers if numbers.count(n) > 1)
    assert {"2.2", "4.6", "5.10", "12"} <= set(numbers)


def test_protocol_doc_lists_the_open_questions(protocol_doc: tuple[set[str], set[int]]) -> None:
    _, questions = protocol_doc
    assert questions == set(range(1, 16))


def test_code_cites_only_documents_in_the_repository_and_sections_that_exist(
    protocol_doc: tuple[set[str], set[int]],
) -> None:
    sections, questions = protocol_doc
    files = python_files()
    assert len(files) > 100  # the scan really walked the package and the tests
    problems = [
        f"{path.relative_to(ROOT)}:{number}: {problem}"
        for path in files
        for number, problem in citation_problems(
            path.read_text(encoding="utf-8"), sections, questions
        )
    ]
    assert problems == []


def test_the_code_does_cite_the_protocol_doc() -> None:
    cited = [p for p in python_files() if CITED_DOC in p.read_text(encoding="utf-8")]
    assert len(cited) >= 20


def test_docs_do_not_point_outside_the_repository() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    problems = [
        f"{page.relative_to(ROOT)}:{number}: {name}"
        for page in pages
        for number, name in outside_citations(page.read_text(encoding="utf-8"))
    ]
    assert problems == []


# --- the checker itself, on made-up text -------------------------------------------------

SECTIONS = {"4", "4.6", "5.9", "12"}
QUESTIONS = {7, 10}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"""Checksum (docs/protocol.md $4.6)."""', []),
        ("# docs/protocol.md $5.9, $4 and $12 #7", []),
        ("# docs/protocol.md $4.7", [(1, "docs/protocol.md has no section $4.7")]),
        (
            "# docs/protocol.md $4.6, $5.10",
            [(1, "docs/protocol.md has no section $5.10")],
        ),
        ("# docs/protocol.md $12 #8", [(1, "docs/protocol.md $12 has no open question #8")]),
        ("# docs/protocol.md $4 #7", [(1, "docs/protocol.md $12 has no open question #7")]),
        (
            "# docs/protocol.md $4\n# bare $4.9 in the same file",
            [(2, "docs/protocol.md has no section $4.9")],
        ),
        (
            "# the gap ($5.9)",
            [(1, "$5.9 names no document (cite docs/protocol.md $5.9)")],
        ),
        ("# installation manual $3.3", []),
        (
            "# see " + "PROTOCOL" + ".md $4.6",
            [
                (1, f"cites {OUTSIDE[0]}, which is not in the repository"),
                (1, "$4.6 names no document (cite docs/protocol.md $4.6)"),
            ],
        ),
        (
            "# docs/protocol.md $4; see " + "DESIGN" + ".md",
            [(1, f"cites {OUTSIDE[1]}, which is not in the repository")],
        ),
        (
            "# docs/protocol.md $4\n# path " + ".." + "/shared/notes/x.md",
            [(2, f"cites {OUTSIDE[3]}, which is not in the repository")],
        ),
    ],
)
def test_citation_problems(text: str, expected: list[tuple[int, str]]) -> None:
    # "$" stands for "§" here, so that these made-up citations are not checked as real ones
    found = list(citation_problems(text.replace("$", "§"), SECTIONS, QUESTIONS))
    assert found == [(line, problem.replace("$", "§")) for line, problem in expected]


def test_doc_sections_reads_headings_and_open_questions() -> None:
    text = "\n".join(
        [
            "# Title",
            "## 1. One",
            "| 3 | not a question |",
            "### 1.2 Sub",
            "#### 1.2.1 Deeper",
            "## 12. Open questions",
            "| # | Question |",
            "|---|---|",
            "| 7 | order |",
            "| 10 | text |",
            "## Appendix",
            "| 11 | after the table |",
        ]
    )
    assert doc_sections(text) == ({"1", "1.2", "1.2.1", "12"}, {7, 10})
