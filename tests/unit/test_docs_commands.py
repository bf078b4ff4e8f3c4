"""Every ``viarah`` command the docs show exists in the CLI, with the options they show.

Commands are looked for in code (fenced blocks and inline code spans) of README.md and
docs/*.md: ``viarah <command> [<action>] [--option ...]``, ``…/bin/viarah …`` and the
Compose forms ``docker compose run [--rm …] web <command> …``. A command the docs
announce before it exists must be listed in NOT_YET_IMPLEMENTED, and every paragraph that
mentions it must say that it is coming.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from viarah.entrypoints.cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])

#: Commands the docs may mention although the CLI does not have them yet, e.g.
#: ``("db", "backup")``. Each must be absent from the parser (remove it here once it
#: exists) and every paragraph naming it must contain one of COMING_WORDS.
NOT_YET_IMPLEMENTED: frozenset[tuple[str, ...]] = frozenset()
COMING_WORDS = ("coming", "not yet")

FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
SPAN = re.compile(r"``?([^`\n]+?)``?")
# The console script (optionally by path) or the Compose service whose entrypoint it is.
INVOCATION = re.compile(
    r"(?:^|(?<=[\s(`'\"$]))"
    r"(?:\S*/bin/viarah|viarah|docker compose run(?:\s+--?[\w-]+)*\s+web)"
    r"[ \t]+(?P<args>[^\n]*)"
)
# Where a command line ends: shell operators, a comment, a subshell's end.
END = re.compile(r";|`|\s(?:&&|\|\||[|&#<>])|\)|$")
WORD = re.compile(r"^[a-z][a-z-]*(?:\|[a-z][a-z-]*)*$")


@dataclass(frozen=True)
class Mention:
    path: Path
    line: int
    text: str
    command: tuple[str, ...]
    options: tuple[str, ...]

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: {self.text.strip()}"


def _code_regions(text: str) -> list[tuple[int, str]]:
    """(offset, code) for fenced blocks (continuation lines joined) and inline spans."""
    regions: list[tuple[int, str]] = []
    outside: list[tuple[int, str]] = []
    last = 0
    for block in FENCE.finditer(text):
        outside.append((last, text[last : block.start()]))
        last = block.end()
        code = block.group(1).replace("\\\n", " ")
        regions.append((block.start(1), code))
    outside.append((last, text[last:]))
    for offset, prose in outside:
        regions.extend((offset + m.start(1), m.group(1)) for m in SPAN.finditer(prose))
    return regions


def _split_command(args: str) -> tuple[list[str], list[str]]:
    """The words naming the command, and the ``--options`` after them."""
    end = END.search(args)
    tokens = args[: end.start() if end else None].split()
    words: list[str] = []
    while tokens and WORD.match(tokens[0]):
        words.append(tokens.pop(0))
    options = [
        token.strip("[](),").split("=", 1)[0]
        for token in tokens
        if token.strip("[](),").startswith("--")
    ]
    return words, options


def _alternatives(words: list[str]) -> list[tuple[str, ...]]:
    """``keys fernet|vapid`` → (keys, fernet), (keys, vapid)."""
    result: list[tuple[str, ...]] = [()]
    for word in words:
        result = [(*prefix, choice) for prefix in result for choice in word.split("|")]
    return result


def scan(text: str) -> list[tuple[int, str, tuple[str, ...], tuple[str, ...]]]:
    """(offset, matched text, command, options) of every invocation in ``text``'s code.

    ``viarah <command> --help`` and ``viarah: notice: …`` name no command and are skipped.
    """
    found: list[tuple[int, str, tuple[str, ...], tuple[str, ...]]] = []
    for offset, code in _code_regions(text):
        for match in INVOCATION.finditer(code):
            words, options = _split_command(match.group("args"))
            for command in _alternatives(words) if words else []:
                found.append((offset + match.start(), match.group(0), command, tuple(options)))
    return found


def mentions(path: Path) -> list[Mention]:
    text = path.read_text(encoding="utf-8")
    return [
        Mention(path, text.count("\n", 0, offset) + 1, matched, command, options)
        for offset, matched, command, options in scan(text)
    ]


def mentions_in(text: str) -> list[tuple[str, ...]]:
    return [command for _offset, _matched, command, _options in scan(text)]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def resolve(
    parser: argparse.ArgumentParser, command: tuple[str, ...]
) -> tuple[argparse.ArgumentParser | None, tuple[str, ...]]:
    """The parser the words lead to (None if a word is unknown), and the words used.

    Words after a command without subcommands are its positional arguments
    (``viarah db restore F``), not part of the command's name.
    """
    used: list[str] = []
    for word in command:
        choices = _subcommands(parser)
        if not choices:
            break
        if word not in choices:
            return None, (*used, word)
        parser = choices[word]
        used.append(word)
    return parser, tuple(used)


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


ALL = [m for path in DOCS for m in mentions(path)]


def _is_not_yet(command: tuple[str, ...]) -> bool:
    return any(command[: len(planned)] == planned for planned in NOT_YET_IMPLEMENTED)


def test_the_docs_mention_commands() -> None:
    assert DOCS, "no documentation found"
    named = {m.command[:2] for m in ALL}
    for expected in (("serve",), ("keys", "rotate"), ("doctor", "secrets"), ("check",)):
        assert any(c[: len(expected)] == expected for c in named), f"no mention of {expected}"


@pytest.mark.parametrize("mention", ALL, ids=lambda m: f"{m.path.name}:{m.line}")
def test_each_mentioned_command_exists(mention: Mention) -> None:
    if _is_not_yet(mention.command):
        return
    parser, used = resolve(build_parser(), mention.command)
    assert parser is not None, (
        f"`viarah {' '.join(used)}` does not exist in the CLI; fix the docs or add the "
        f"command (or list it in NOT_YET_IMPLEMENTED and say it is coming):\n{mention.where()}"
    )
    unknown = sorted(set(mention.options) - _options(parser))
    assert not unknown, (
        f"`viarah {' '.join(used)}` has no option {', '.join(unknown)}:\n{mention.where()}"
    )


def test_not_yet_implemented_commands_are_really_missing() -> None:
    """Once a planned command exists, it leaves NOT_YET_IMPLEMENTED (and the docs stop
    calling it coming)."""
    parser = build_parser()
    exist = [" ".join(c) for c in sorted(NOT_YET_IMPLEMENTED) if resolve(parser, c)[0]]
    assert not exist, (
        f"these commands exist now: {', '.join(exist)}; remove them from NOT_YET_IMPLEMENTED "
        "and rewrite the docs that call them coming"
    )


def coming_problems(
    text: str, parser: argparse.ArgumentParser, planned: frozenset[tuple[str, ...]]
) -> list[str]:
    """Paragraphs that mention a planned, missing command without saying it is coming."""
    problems: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text):
        for command in mentions_in(paragraph):
            is_planned = any(command[: len(p)] == p for p in planned)
            if not is_planned or resolve(parser, command)[0] is not None:
                continue
            if not any(word in paragraph for word in COMING_WORDS):
                problems.append(f"`viarah {' '.join(command)}` in: {paragraph.strip()[:300]}")
    return problems


def test_docs_say_that_not_yet_implemented_commands_are_coming() -> None:
    parser = build_parser()
    problems = [
        f"{path.relative_to(ROOT)}: {problem}"
        for path in DOCS
        for problem in coming_problems(
            path.read_text(encoding="utf-8"), parser, NOT_YET_IMPLEMENTED
        )
    ]
    assert not problems, "commands that do not exist yet, not called coming:\n" + "\n".join(
        problems
    )


def test_the_checker_catches_a_wrong_command_and_option() -> None:
    """Guards the guard: an unknown command, action or option is reported."""
    parser = build_parser()
    assert resolve(parser, ("keys", "rotate"))[0] is not None
    assert resolve(parser, ("keys", "shred"))[0] is None
    assert resolve(parser, ("frobnicate",))[0] is None
    text = (
        "Run `viarah worker --processes 2 --turbo` and\n\n"
        "```sh\nprintf x | docker compose exec -T web viarah users create \\\n"
        "    --email a@b --password-stdin   # comment --ignored\n"
        "docker compose run --rm --no-deps web keys fernet|vapid\n```\n"
        "`viarah: notice: X` and `viarah <command> --help` are not commands.\n"
    )
    found = [(command, options) for _o, _m, command, options in scan(text)]
    assert found == [
        (("users", "create"), ("--email", "--password-stdin")),
        (("keys", "fernet"), ()),
        (("keys", "vapid"), ()),
        (("worker",), ("--processes", "--turbo")),
    ], found
    worker, _ = resolve(parser, ("worker",))
    assert worker is not None
    assert "--turbo" not in _options(worker)
    assert "--processes" in _options(worker)
    planned = frozenset({("frobnicate",)})
    assert coming_problems("`viarah frobnicate` is coming soon.", parser, planned) == []
    assert coming_problems("Run `viarah frobnicate` daily.", parser, planned) != []
    assert coming_problems("Run `viarah frobnicate` daily.", parser, frozenset()) == []
