"""The CI guard ``.ci/check_requirements.py``: every requirement pinned ``NAME==VERSION`` from the index.

``requirements.lock`` once pinned ``torch @ file:///tmp/...whl``, which installs only on
the machine that wrote it. The guard runs here as CI runs it: a subprocess.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / ".ci" / "check_requirements.py"
CLEAN = re.compile(r"^requirements: (\d+) pinned requirements checked in (\d+) files$")
LOCAL = "names a local path or URL; pin {name}==VERSION from the package index"
UNPINNED = "is not pinned to exactly one version; pin {name}==VERSION from the package index"


def _check(*args: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the repository's requirement files and pyproject.toml."""
    copied = [p for p in ROOT.iterdir() if p.name == "pyproject.toml" or p.name.startswith("requirements")]
    assert any(p.name == "requirements.lock" for p in copied)
    for path in copied:
        if path.is_file():
            shutil.copy(path, tmp_path / path.name)
    return tmp_path


def _insert(path: Path, line_number: int, text: str) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    lines.insert(line_number - 1, text)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _offences(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    return result.stderr.splitlines()


def test_the_repository_passes() -> None:
    result = _check()
    assert result.returncode == 0, result.stderr
    match = CLEAN.match(result.stdout.strip())
    assert match, result.stdout
    assert int(match.group(1)) > 200  # the lock, the model requirements and pyproject's
    assert int(match.group(2)) >= 3
    assert result.stderr == ""


def test_a_clean_copy_passes(repo: Path) -> None:
    result = _check(repo)
    assert result.returncode == 0, result.stderr
    assert CLEAN.match(result.stdout.strip())


def test_the_torch_wheel_that_started_it_fails(repo: Path) -> None:
    lock = repo / "requirements.lock"
    text = lock.read_text(encoding="utf-8")
    bad = "torch @ file:///tmp/tw/torch-2.15.0-cp311-cp311-manylinux_2_28_x86_64.whl#sha256=48c2d861134c0b56"
    lock.write_text(text.replace("torch==2.15.0\n", bad + "\n"), encoding="utf-8")
    number = text.splitlines().index("torch==2.15.0") + 1
    assert _offences(_check(repo)) == [f"requirements.lock:{number}: {bad}: {LOCAL.format(name='torch')}"]


LOCAL_FORMS = [
    # direct references
    "foo @ https://example.com/foo-1.0.tar.gz",
    "foo[extra] @ file:///home/me/foo",
    "foo@git+https://github.com/example/foo.git@v1.0",
    # URLs
    "https://example.com/foo-1.0.tar.gz",
    "http://example.com/foo-1.0.zip",
    "file:///tmp/wheels/foo-1.0-py3-none-any.whl",
    "file:foo",
    "git+https://github.com/example/foo.git@v1.0#egg=foo",
    "git+ssh://git@github.com/example/foo.git",
    "hg+https://example.com/foo#egg=foo",
    # local paths and archives
    "./vendor/foo",
    "../foo",
    "/abs/path/foo",
    "~/src/foo",
    "vendor/foo",
    "foo-1.0-py3-none-any.whl",
    "foo-1.0.tar.gz",
    "foo-1.0.zip",
    "dist/foo-1.0.tar.gz ; python_version < '3.12'",
    "C:\\wheels\\foo-1.0-py3-none-any.whl",
    # editables
    "-e .",
    "-e git+https://github.com/example/foo.git#egg=foo",
    "--editable ./foo",
    "-e./foo",
    # options that change the index or point elsewhere
    "--index-url https://mirror.example/simple",
    "--index-url=https://mirror.example/simple",
    "-i https://mirror.example/simple",
    "-ihttps://mirror.example/simple",
    "--extra-index-url https://download.pytorch.org/whl/cpu",
    "--extra-index-url=https://download.pytorch.org/whl/cpu",
    "--find-links /tmp/wheels",
    "--find-links=./wheels",
    "-f ./wheels",
    "--no-index",
    "-r https://example.com/requirements.txt",
    "--requirement=https://example.com/requirements.txt",
    "-c https://example.com/constraints.txt",
    "--constraint http://example.com/constraints.txt",
    "-r /etc/requirements.txt",
    "-c ../outside.txt",
    # an index option after a pinned requirement
    "foo==1.0 --index-url https://mirror.example/simple",
]

UNPINNED_FORMS = [
    "foo",
    "foo>=1.0",
    "foo<=1.0",
    "foo~=1.0",
    "foo!=1.0",
    "foo>1.0",
    "foo==1.*",
    "foo==1.0,<2",
    "foo>=1.0,==1.0",
    "foo===1.0",
    "foo[extra]",
    "foo ; python_version < '3.12'",
]


@pytest.mark.parametrize("form", LOCAL_FORMS)
def test_a_local_path_url_editable_or_index_option_fails(repo: Path, form: str) -> None:
    _insert(repo / "requirements.lock", 5, form)
    (offence,) = _offences(_check(repo))
    assert offence.startswith(f"requirements.lock:5: {form}: names a local path or URL; pin "), offence
    assert offence.endswith("==VERSION from the package index")


@pytest.mark.parametrize("form", UNPINNED_FORMS)
def test_a_requirement_not_pinned_to_one_version_fails(repo: Path, form: str) -> None:
    _insert(repo / "requirements-model.txt", 3, form)
    assert _offences(_check(repo)) == [f"requirements-model.txt:3: {form}: {UNPINNED.format(name='foo')}"]


@pytest.mark.parametrize("name", ["requirements-dev.txt", "requirements-ci.lock", "requirements.in"])
def test_every_requirements_file_in_the_root_is_checked(repo: Path, name: str) -> None:
    (repo / name).write_text("# tools\n\npytest==9.2.0\nruff>=0.17\n", encoding="utf-8")
    assert _offences(_check(repo)) == [f"{name}:4: ruff>=0.17: {UNPINNED.format(name='ruff')}"]


def test_every_offence_is_reported_with_its_own_line(repo: Path) -> None:
    (repo / "requirements-extra.txt").write_text(
        "ok==1.0\n-e .\nok2==2.0\nfoo @ https://example.com/foo.zip\nbar\n", encoding="utf-8"
    )
    assert _offences(_check(repo)) == [
        f"requirements-extra.txt:2: -e .: {LOCAL.format(name='NAME')}",
        f"requirements-extra.txt:4: foo @ https://example.com/foo.zip: {LOCAL.format(name='foo')}",
        f"requirements-extra.txt:5: bar: {UNPINNED.format(name='bar')}",
    ]


def test_hashes_comments_and_global_options_pass(repo: Path) -> None:
    before = CLEAN.match(_check(repo).stdout.strip())
    assert before
    (repo / "requirements-hashed.txt").write_text(
        "# Generated with --require-hashes; see https://example.com/#docs\n"
        "--require-hashes\n"
        "--only-binary :all:\n"
        "\n"
        "   # an indented comment\n"
        "foo==1.0 \\\n"
        "    --hash=sha256:aaaa \\\n"
        "    --hash=sha256:bbbb  # a trailing comment\n"
        "bar==2.0 --hash=sha256:cccc\n"
        "baz[extra] == 3.0.post1 ; python_version < '3.12'  # with a marker\n"
        "qux==4.0+local\n",
        encoding="utf-8",
    )
    result = _check(repo)
    assert result.returncode == 0, result.stderr
    after = CLEAN.match(result.stdout.strip())
    assert after
    assert int(after.group(1)) == int(before.group(1)) + 4
    assert int(after.group(2)) == int(before.group(2)) + 1


def test_an_offence_in_a_continued_line_is_reported_at_its_first_line(repo: Path) -> None:
    (repo / "requirements-hashed.txt").write_text(
        "ok==1.0 --hash=sha256:aaaa\nfoo>=1.0 \\\n    --hash=sha256:bbbb \\\n    --hash=sha256:cccc\nbar==2.0\n",
        encoding="utf-8",
    )
    assert _offences(_check(repo)) == [f"requirements-hashed.txt:2: foo>=1.0: {UNPINNED.format(name='foo')}"]


def test_included_files_inside_the_root_are_checked(repo: Path) -> None:
    (repo / "ci").mkdir()
    (repo / "ci" / "extra.txt").write_text("fine==1.0\nloose\n", encoding="utf-8")
    _insert(repo / "requirements-model.txt", 3, "-r ci/extra.txt")
    assert _offences(_check(repo)) == [f"ci/extra.txt:2: loose: {UNPINNED.format(name='loose')}"]
    _insert(repo / "requirements-model.txt", 3, "-c ci/missing.txt")
    assert "requirements-model.txt:3: -c ci/missing.txt: names a requirements file that does not exist" in (
        _offences(_check(repo))
    )


def _pyproject_line(repo: Path, needle: str) -> int:
    lines = (repo / "pyproject.toml").read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, start=1) if needle in line)


@pytest.mark.parametrize(
    ("pinned", "bad", "name"),
    [
        (
            '"torch==2.15.0"',
            "torch @ https://download.pytorch.org/whl/cpu/torch-2.15.0%2Bcpu-cp311-linux_x86_64.whl",
            "torch",
        ),
        ('"torch==2.15.0"', "torch @ file:///tmp/tw/torch-2.15.0-cp311-cp311-manylinux_2_28_x86_64.whl", "torch"),
        ('"pytest==9.2.0"', "pytest @ git+https://github.com/pytest-dev/pytest@main", "pytest"),
        ('"ruff==0.17.5"', "ruff @ file:///home/me/ruff", "ruff"),
    ],
)
def test_pyproject_direct_references_fail(repo: Path, pinned: str, bad: str, name: str) -> None:
    pyproject = repo / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    assert pinned in text
    pyproject.write_text(text.replace(pinned, f'"{bad}"'), encoding="utf-8")
    number = _pyproject_line(repo, bad)
    assert _offences(_check(repo)) == [f"pyproject.toml:{number}: {bad}: {LOCAL.format(name=name)}"]


def test_pyproject_unpinned_dependencies_fail(repo: Path) -> None:
    pyproject = repo / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(text.replace('"rich==15.0.0"', '"rich>=15"').replace('"mypy==2.4.1"', '"mypy"'))
    rich, mypy = _pyproject_line(repo, '"rich>=15"'), _pyproject_line(repo, '"mypy"')
    assert _offences(_check(repo)) == [
        f"pyproject.toml:{rich}: rich>=15: {UNPINNED.format(name='rich')}",
        f"pyproject.toml:{mypy}: mypy: {UNPINNED.format(name='mypy')}",
    ]


def test_pyproject_alone_or_a_single_file_can_be_checked(repo: Path) -> None:
    assert _check(repo / "pyproject.toml").returncode == 0
    assert _check(repo / "requirements.lock").returncode == 0
    (repo / "loose.txt").write_text("foo\n", encoding="utf-8")
    # A file outside the working directory is named as given.
    assert _offences(_check(repo / "loose.txt")) == [f"{repo / 'loose.txt'}:1: foo: {UNPINNED.format(name='foo')}"]


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    missing = _check(tmp_path / "nowhere")
    assert missing.returncode == 2 and "no such file or folder" in missing.stderr
    empty = _check(tmp_path)
    assert empty.returncode == 2 and "no requirement files" in empty.stderr
