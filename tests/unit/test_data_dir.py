"""Where the embedded database lives (app/data_dir.py): the same place from any folder of the project."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.data_dir import find_data_dir, find_project
from app.settings import Settings

PUNCHCLOCK_PYPROJECT = '[project]\nname = "punchclock"\nversion = "0.1.0"\n'


def project(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "actors" / "deep").mkdir(parents=True)
    (root / "pyproject.toml").write_text(PUNCHCLOCK_PYPROJECT)
    return root


def test_from_any_folder_of_the_project_its_dot_punchclock(tmp_path: Path) -> None:
    root = project(tmp_path)
    home = tmp_path / "home"
    for cwd in (root, root / "actors", root / "actors" / "deep"):
        assert find_data_dir(cwd, {}, home) == root.resolve() / ".punchclock", cwd
    assert find_project(root / "actors" / "deep") == root.resolve()


def test_another_projects_pyproject_is_not_ours(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "pyproject.toml").write_text('[project]\nname = "something-else"\n')
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "pyproject.toml").write_text("not = [toml")
    home = tmp_path / "home"
    assert find_data_dir(other, {}, home) == home / ".local" / "share" / "punchclock"
    assert find_data_dir(tmp_path / "broken", {}, home) == home / ".local" / "share" / "punchclock"


def test_outside_a_checkout_one_per_user_place(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert find_data_dir(tmp_path, {}, home) == home / ".local" / "share" / "punchclock"
    xdg = tmp_path / "xdg"
    assert find_data_dir(tmp_path, {"XDG_DATA_HOME": str(xdg)}, home) == xdg / "punchclock"
    # the XDG spec ignores a relative path
    assert find_data_dir(tmp_path, {"XDG_DATA_HOME": "rel"}, home) == home / ".local" / "share" / "punchclock"


def test_punchclock_data_dir_wins_relative_to_the_working_directory(tmp_path: Path) -> None:
    root = project(tmp_path)
    env = {"PUNCHCLOCK_DATA_DIR": "data"}
    assert find_data_dir(root / "actors", env, tmp_path) == (root / "actors" / "data").resolve()
    env = {"PUNCHCLOCK_DATA_DIR": str(tmp_path / "abs")}
    assert find_data_dir(root, env, tmp_path) == (tmp_path / "abs").resolve()


def test_settings_resolve_the_data_directory_from_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = project(tmp_path)
    monkeypatch.chdir(root / "actors")
    settings = Settings.from_env({})
    assert settings.data_dir == root.resolve() / ".punchclock"
    assert settings.pgdata == root.resolve() / ".punchclock" / "pgdata"
