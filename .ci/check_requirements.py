#!/usr/bin/env python3
"""Fail CI when a requirement names a local path or URL, or is not pinned to one version.

``requirements.lock`` once pinned ``torch @ file:///tmp/...whl``: it installed only on
the machine that wrote it. Every requirement must come from the package index, pinned
``NAME==VERSION``. Checked:

* ``requirements*.txt``, ``requirements*.lock`` and ``requirements*.in`` in the root
  (and the files they include with ``-r``/``-c``), in pip's requirements-file format:
  comments, blank lines, ``\\`` continuations, ``--hash=...`` parts and harmless
  global options (``--require-hashes``, ``--only-binary``...) are fine;
* ``[project] dependencies`` and ``[project.optional-dependencies]`` of ``pyproject.toml``.

Offences, one line each (exit 1):

* a direct reference (``name @ URL``), a URL (``https://``, ``file:``, ``git+``...), a
  local path (``./x``, ``../x``, ``/abs``, ``x.whl``, ``x.tar.gz``, ``x.zip``...), an
  editable (``-e``), an option that changes the index or points elsewhere (``-i``,
  ``--index-url``, ``--extra-index-url``, ``--no-index``, ``-f``, ``--find-links``,
  ``-r``/``-c`` to a URL or outside the root);
* a requirement not pinned with ``==`` to exactly one version (``foo``, ``foo>=1``,
  ``foo==1.*``, ``foo==1,<2``).

Usage: ``python .ci/check_requirements.py [ROOT | FILE ...]`` (default: the repository
root). A FILE is checked as a requirements file, or as pyproject if it is named
``pyproject.toml``. Exit 0 prints ``requirements: N pinned requirements checked in K files``;
exit 2 is a usage error. Standard library only.
"""

from __future__ import annotations

import re
import sys
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PATTERNS = ("requirements*.txt", "requirements*.lock", "requirements*.in")
PYPROJECT = "pyproject.toml"
REPO_ROOT = Path(__file__).resolve().parent.parent

LOCAL = "names a local path or URL; pin {name}==VERSION from the package index"
UNPINNED = "is not pinned to exactly one version; pin {name}==VERSION from the package index"
MISSING = "names a requirements file that does not exist"

# pip: a comment starts a line or follows whitespace (a URL's `#sha256=` is not one).
COMMENT_RE = re.compile(r"(^|\s+)#.*$")
SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # https:, file:, git+ssh:, also C: on Windows
NAME_RE = re.compile(r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")
REQUIREMENT_RE = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[[^\]]*\])?\s*(?P<spec>[^;]*?)\s*(?:;.*)?$"
)
PIN_RE = re.compile(r"^==\s*(?P<version>[A-Za-z0-9][A-Za-z0-9.+!_-]*)$")
ARCHIVES = (".whl", ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz", ".tar.xz", ".txz", ".egg")
EGG_RE = re.compile(r"[#&]egg=(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)")
WHEEL_NAME_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._]*?)-\d")

# Options that take where packages come from away from the package index.
INDEX_OPTIONS = frozenset(
    {"-i", "--index-url", "--extra-index-url", "--no-index", "-f", "--find-links", "-e", "--editable"}
)
INCLUDE_OPTIONS = frozenset({"-r", "--requirement", "-c", "--constraint"})


@dataclass(frozen=True)
class Offence:
    """One requirement that breaks the rule, where it is written."""

    file: str
    line: int
    requirement: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.requirement}: {self.problem}"


@dataclass
class Result:
    """What a run found: offences, how many requirements were checked, in which files."""

    offences: list[Offence] = field(default_factory=list)
    requirements: int = 0
    files: list[Path] = field(default_factory=list)


def guess_name(requirement: str) -> str:
    """The project name a requirement is about, for the hint (``NAME`` when it cannot tell)."""
    egg = EGG_RE.search(requirement)
    if egg:
        return egg.group("name")
    if "@" in requirement and not SCHEME_RE.match(requirement):
        match = NAME_RE.match(requirement.strip())
        if match:
            return match.group("name")
    basename = re.split(r"[/\\]", requirement.split("#")[0].split(";")[0].strip().rstrip("/"))[-1]
    wheel = WHEEL_NAME_RE.match(basename)
    if wheel:
        return wheel.group("name")
    match = REQUIREMENT_RE.match(requirement.strip())
    if match and not SCHEME_RE.match(requirement) and not re.search(r"[/\\]", requirement):
        return match.group("name")
    return "NAME"


def is_url(value: str) -> bool:
    """``https://...``, ``file:...``, ``git+ssh://...`` (and Windows drive paths, local as well)."""
    return bool(SCHEME_RE.match(value.strip()))


def is_local_or_url(requirement: str) -> bool:
    """A direct reference, URL, path or archive file instead of ``name==version``."""
    text = requirement.strip()
    if "@" in text or is_url(text):
        return True
    head = re.split(r"[\s;]", text, maxsplit=1)[0]
    if head.startswith((".", "/", "\\", "~")) or "/" in head or "\\" in head:
        return True
    return head.lower().endswith(ARCHIVES)


def check_requirement(requirement: str) -> str | None:
    """The problem with one requirement string (PEP 508), or None when it is ``name==version``."""
    name = guess_name(requirement)
    if is_local_or_url(requirement):
        return LOCAL.format(name=name)
    match = REQUIREMENT_RE.match(requirement.strip())
    if match is None:
        return UNPINNED.format(name=name)
    spec = match.group("spec").strip()
    if spec.startswith("(") and spec.endswith(")"):  # legacy `name (==1.0)`
        spec = spec[1:-1].strip()
    specifiers = [s.strip() for s in spec.split(",")] if spec else []
    if len(specifiers) != 1 or PIN_RE.match(specifiers[0]) is None:
        return UNPINNED.format(name=name)
    return None


def logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines as pip reads them: ``\\`` continuations joined (numbered by their first line), comments gone."""
    start: int | None = None
    parts: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.endswith("\\") and not COMMENT_RE.match(line):
            if start is None:
                start = number
            parts.append(line[:-1])
            continue
        if start is not None:
            parts.append(" " + line if COMMENT_RE.match(line) else line)  # as pip: the comment stays one
            joined, first = "".join(parts), start
            start, parts = None, []
        else:
            joined, first = line, number
        stripped = COMMENT_RE.sub("", joined).strip()
        if stripped:
            yield first, stripped
    if start is not None:
        stripped = COMMENT_RE.sub("", "".join(parts)).strip()
        if stripped:
            yield start, stripped


def split_option(line: str) -> tuple[str, str]:
    """``--index-url=URL``, ``--index-url URL``, ``-iURL`` -> (option, value)."""
    if line.startswith("--"):
        option, sep, rest = line.partition("=")
        if not sep:
            option, _, rest = line.partition(" ")
        return option.strip(), rest.strip()
    option, rest = line[:2], line[2:]
    return option, rest.lstrip("= ").strip()


def split_requirement_options(line: str) -> tuple[str, list[str]]:
    """pip's rule: words up to the first one starting with ``-`` are the requirement, the rest options."""
    words = line.split(" ")
    for index, word in enumerate(words):
        if word.startswith("-"):
            return " ".join(words[:index]).strip(), [w for w in words[index:] if w]
    return line.strip(), []


class Checker:
    """Checks requirement files and pyproject tables, following ``-r``/``-c`` inside the root."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.result = Result()
        self._seen: set[Path] = set()

    def name(self, path: Path) -> str:
        try:
            return path.resolve().relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def _offend(self, path: Path, line: int, requirement: str, problem: str) -> None:
        self.result.offences.append(Offence(self.name(path), line, requirement, problem))

    def _mark(self, path: Path) -> bool:
        resolved = path.resolve()
        if resolved in self._seen:
            return False
        self._seen.add(resolved)
        self.result.files.append(path)
        return True

    def requirements_file(self, path: Path) -> None:
        """A pip requirements file (``-r``/``-c`` includes inside the root are checked too)."""
        if not self._mark(path):
            return
        for number, line in logical_lines(path.read_text(encoding="utf-8-sig")):
            if line.startswith("-"):
                self._option(path, number, line)
                continue
            requirement, options = split_requirement_options(line)
            self.result.requirements += 1
            shown = requirement or line
            problem = check_requirement(requirement) if requirement else UNPINNED.format(name="NAME")
            if problem is None:
                # Per-requirement options (--hash=..., --config-settings) are fine; index ones are not.
                for option in options:
                    if split_option(option)[0] in INDEX_OPTIONS | INCLUDE_OPTIONS:
                        problem, shown = LOCAL.format(name=guess_name(requirement)), line
                        break
            if problem is not None:
                self._offend(path, number, shown, problem)

    def _option(self, path: Path, number: int, line: str) -> None:
        option, value = split_option(line)
        if option in ("-e", "--editable"):
            self.result.requirements += 1
            self._offend(path, number, line, LOCAL.format(name=guess_name(value)))
        elif option in INDEX_OPTIONS:
            self._offend(path, number, line, LOCAL.format(name="NAME"))
        elif option in INCLUDE_OPTIONS:
            self._include(path, number, line, value)
        # Anything else (--require-hashes, --hash=..., --only-binary, --pre...) changes no source.

    def _include(self, path: Path, number: int, line: str, value: str) -> None:
        if not value or is_url(value) or value.startswith(("/", "\\", "~")):
            self._offend(path, number, line, LOCAL.format(name="NAME"))
            return
        target = (path.parent / value).resolve()
        if not target.is_relative_to(self.root):
            self._offend(path, number, line, LOCAL.format(name="NAME"))
        elif not target.is_file():
            self._offend(path, number, line, MISSING)
        else:
            self.requirements_file(target)

    def pyproject(self, path: Path) -> None:
        """``[project] dependencies`` and ``[project.optional-dependencies]``."""
        if not self._mark(path):
            return
        text = path.read_text(encoding="utf-8-sig")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            line = re.search(r"line (\d+)", str(exc))
            self._offend(path, int(line.group(1)) if line else 1, PYPROJECT, f"not valid TOML ({exc})")
            return
        project = data.get("project", {})
        lines = text.splitlines()
        tables: list[tuple[str, object]] = [("dependencies", project.get("dependencies", []))]
        optional = project.get("optional-dependencies", {})
        if isinstance(optional, dict):
            tables += [(f"optional-dependencies.{extra}", deps) for extra, deps in optional.items()]
        for where, deps in tables:
            if not isinstance(deps, list):
                continue
            key = where.rsplit(".", 1)[-1]
            cursor = _key_line(lines, key, "optional" in where)
            for requirement in deps:
                if not isinstance(requirement, str):
                    continue
                self.result.requirements += 1
                cursor = _line_of(lines, requirement, cursor)
                problem = check_requirement(requirement)
                if problem is not None:
                    self._offend(path, cursor, requirement, problem)


def _key_line(lines: Sequence[str], key: str, optional: bool) -> int:
    """The 1-based line where ``key =`` is set (under ``[project.optional-dependencies]`` if optional)."""
    start = 0
    if optional:
        for index, line in enumerate(lines):
            if re.match(r"^\s*\[\s*project\.optional-dependencies\s*\]", line):
                start = index
                break
    pattern = re.compile(rf"""^\s*["']?{re.escape(key)}["']?\s*=""")
    for index in range(start, len(lines)):
        if pattern.match(lines[index]):
            return index + 1
    return 1


def _line_of(lines: Sequence[str], requirement: str, cursor: int) -> int:
    """The first line at or after ``cursor`` (1-based) that spells out ``requirement``; else ``cursor``."""
    for quote in ('"', "'"):
        needle = f"{quote}{requirement}{quote}"
        for index in range(cursor - 1, len(lines)):
            if needle in lines[index]:
                return index + 1
    return cursor


def run(paths: Sequence[Path]) -> Result:
    """Check each ROOT folder (its requirement files and pyproject) or FILE."""
    roots = [p for p in paths if p.is_dir()]
    checker = Checker(roots[0] if roots else Path.cwd())
    for path in paths:
        if path.is_dir():
            checker.root = path.resolve()
            for found in sorted({f for pattern in PATTERNS for f in path.glob(pattern) if f.is_file()}):
                checker.requirements_file(found)
            if (path / PYPROJECT).is_file():
                checker.pyproject(path / PYPROJECT)
        elif path.name == PYPROJECT:
            checker.pyproject(path)
        else:
            checker.requirements_file(path)
    return checker.result


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    paths = [Path(a) for a in args] or [REPO_ROOT]
    missing = [p for p in paths if not p.exists()]
    if missing:
        print(f"check_requirements: no such file or folder: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    result = run(paths)
    if not result.files:
        shown = ", ".join(map(str, paths))
        print(f"check_requirements: no requirement files or {PYPROJECT} in {shown}", file=sys.stderr)
        return 2
    if result.offences:
        for offence in result.offences:
            print(offence, file=sys.stderr)
        return 1
    print(f"requirements: {result.requirements} pinned requirements checked in {len(result.files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
