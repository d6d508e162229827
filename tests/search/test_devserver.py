"""The test-server provisioning logic that can be checked without starting a server."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import pytest

from search import devserver


def _fake_java(root: Path, name: str, version: str) -> Path:
    home = root / name
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text("#!/bin/sh\nexit 0\n")
    java.chmod(0o755)
    (home / "release").write_text(f'IMPLEMENTOR="Test"\nJAVA_VERSION="{version}"\n')
    return home


@pytest.fixture
def jvms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "jvm"
    monkeypatch.setattr(devserver, "JVM_ROOTS", (root,))
    monkeypatch.delenv("ES_JAVA_HOME", raising=False)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    return root


def test_find_java_skips_a_too_old_java_home(jvms: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = _fake_java(jvms, "java-17", "17.0.15")
    _fake_java(jvms, "java-21", "21.0.4")
    newest = _fake_java(jvms, "temurin-25", "25.0.1")
    monkeypatch.setenv("JAVA_HOME", str(old))

    assert devserver.java_version(old) == 17
    assert devserver.find_java() == newest


def test_find_java_honours_a_suitable_java_home(jvms: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = _fake_java(jvms, "java-21", "21.0.4")
    _fake_java(jvms, "temurin-25", "25.0.1")
    monkeypatch.setenv("JAVA_HOME", str(chosen))

    assert devserver.find_java() == chosen


def test_find_java_explains_how_to_get_one(jvms: Path) -> None:
    _fake_java(jvms, "java-17", "17.0.15")
    with pytest.raises(devserver.MissingTool, match="Java 21"):
        devserver.find_java()


def test_unzip_keeps_permission_bits(tmp_path: Path) -> None:
    archive = tmp_path / "dist.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("es/bin/elasticsearch")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\n")
        zf.writestr("es/config/elasticsearch.yml", "")

    devserver._unzip(archive, tmp_path / "out")

    assert os.access(tmp_path / "out/es/bin/elasticsearch", os.X_OK)
    assert (tmp_path / "out/es/config/elasticsearch.yml").is_file()


def _missing_java() -> Path:
    raise devserver.MissingTool("no Java 21+ found")


_CHECK_NO_URL = "import os, sys; sys.exit(0 if 'MOMENTS_TEST_ES_URL' not in os.environ else 9)"


def test_run_without_java_runs_the_command_without_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MOMENTS_TEST_ES_URL", raising=False)
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(devserver, "find_java", _missing_java)

    assert devserver.run([sys.executable, "-c", _CHECK_NO_URL]) == 0


def test_run_without_java_fails_under_ci(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MOMENTS_TEST_ES_URL", raising=False)
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(devserver, "find_java", _missing_java)
    marker = tmp_path / "ran"

    assert devserver.run([sys.executable, "-c", f"open({str(marker)!r}, 'w')"]) == 1
    assert not marker.exists()
    assert "CI=true" in capsys.readouterr().err


def test_run_uses_a_given_url_and_returns_the_command_status(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOMENTS_TEST_ES_URL", "http://127.0.0.1:1")
    monkeypatch.setattr(devserver, "find_java", _missing_java)  # proves nothing is provisioned

    code = "import os, sys; sys.exit(7 if os.environ['MOMENTS_TEST_ES_URL'] == 'http://127.0.0.1:1' else 1)"
    assert devserver.run([sys.executable, "-c", code]) == 7


def test_main_strips_the_double_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOMENTS_TEST_ES_URL", "http://127.0.0.1:1")

    assert devserver.main(["run", "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3
