"""docs/configuration.md lists exactly the variables settings.VARIABLES declares."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from viarah.settings import VARIABLES, load_settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
HEADER = ("Variable", "Alias", "Default", "Used by", "Meaning")
EMPTY = "(empty)"
NO_ALIAS = "—"
CODE = re.compile(r"`([^`]*)`")


@dataclass(frozen=True)
class DocRow:
    name: str
    alias: str | None
    default: str
    compose_only: bool


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _code(cell: str, what: str, line: str) -> str:
    match = CODE.fullmatch(cell)
    if match is None:
        raise AssertionError(f"{what} cell {cell!r} is not a single `code` span in: {line}")
    return match.group(1)


def parse_variables_table(text: str) -> list[DocRow]:
    """The rows of the table whose header is HEADER; AssertionError on a malformed row."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if tuple(_cells(line)) == HEADER]
    assert len(starts) == 1, f"expected one table with header {HEADER}, found {len(starts)}"
    rows: list[DocRow] = []
    for line in lines[starts[0] + 2 :]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        assert len(cells) == len(HEADER), f"expected {len(HEADER)} cells in: {line}"
        name_cell, alias_cell, default_cell, used_by, _meaning = cells
        name = _code(name_cell, "Variable", line)
        alias = None if alias_cell == NO_ALIAS else _code(alias_cell, "Alias", line)
        default = "" if default_cell == EMPTY else _code(default_cell, "Default", line)
        assert used_by in ("app", "compose"), f"Used by must be app or compose in: {line}"
        rows.append(DocRow(name, alias, default, used_by == "compose"))
    return rows


@pytest.fixture(scope="module")
def doc_rows() -> list[DocRow]:
    return parse_variables_table(DOC.read_text(encoding="utf-8"))


def test_every_declared_variable_is_documented(doc_rows: list[DocRow]) -> None:
    documented = {row.name for row in doc_rows}
    missing = sorted(v.name for v in VARIABLES if v.name not in documented)
    assert not missing, (
        f"docs/configuration.md is missing {', '.join(missing)} "
        "(declared in settings.VARIABLES); add a row to its Variables table"
    )


def test_every_documented_variable_is_declared(doc_rows: list[DocRow]) -> None:
    declared = {v.name for v in VARIABLES}
    extra = sorted(row.name for row in doc_rows if row.name not in declared)
    assert not extra, (
        f"docs/configuration.md lists {', '.join(extra)}, which settings.VARIABLES "
        "does not declare; remove the row or declare the variable"
    )


def test_no_variable_is_documented_twice(doc_rows: list[DocRow]) -> None:
    names = [row.name for row in doc_rows]
    twice = sorted({name for name in names if names.count(name) > 1})
    assert not twice, f"docs/configuration.md lists {', '.join(twice)} more than once"


def test_aliases_match(doc_rows: list[DocRow]) -> None:
    documented = {row.name: row.alias for row in doc_rows}
    wrong = [
        f"{v.name}: settings alias {v.alias!r}, documented {documented[v.name]!r}"
        for v in VARIABLES
        if v.name in documented and documented[v.name] != v.alias
    ]
    assert not wrong, "docs/configuration.md has the wrong alias for " + "; ".join(wrong)


def test_defaults_match(doc_rows: list[DocRow]) -> None:
    documented = {row.name: row.default for row in doc_rows}
    wrong = [
        f"{v.name}: settings default {v.default!r}, documented {documented[v.name]!r}"
        for v in VARIABLES
        if v.name in documented and documented[v.name] != v.default
    ]
    assert not wrong, "docs/configuration.md has the wrong default for " + "; ".join(wrong)


def test_compose_only_variables_match(doc_rows: list[DocRow]) -> None:
    documented = {row.name: row.compose_only for row in doc_rows}
    wrong = sorted(
        v.name for v in VARIABLES if v.name in documented and documented[v.name] != v.compose_only
    )
    assert not wrong, (
        f"docs/configuration.md has the wrong 'Used by' (app/compose) for {', '.join(wrong)}"
    )


def test_the_doc_shows_the_deprecation_notice_settings_produces() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Deprecated names", 1)
    assert len(section) == 2, "docs/configuration.md needs a '## Deprecated names' section"
    env = {
        "VIA_RAH_SECRET_KEY": "test-secret-key-0123456789abcdef",
        "CELERY_BROKER_URL": "redis://redis:6379/0",
    }
    notices = load_settings(env).notices
    assert notices, "settings no longer reports a notice for CELERY_BROKER_URL"
    assert notices[0] in section[1], (
        f"the Deprecated names section must quote the notice settings prints: {notices[0]!r}"
    )


def test_the_parser_rejects_a_table_that_differs() -> None:
    """Guards the guard: a doc missing a row, or with a wrong default, is caught."""
    text = DOC.read_text(encoding="utf-8")
    without_row = "\n".join(
        line for line in text.splitlines() if not line.startswith("| `VIA_RAH_LOG_LEVEL`")
    )
    assert "VIA_RAH_LOG_LEVEL" not in {row.name for row in parse_variables_table(without_row)}
    wrong_default = text.replace("| `30` |", "| `31` |", 1)
    defaults = {row.name: row.default for row in parse_variables_table(wrong_default)}
    assert defaults["WORKER_HEARTBEAT_SECONDS"] == "31"
