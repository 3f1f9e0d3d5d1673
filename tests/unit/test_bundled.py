"""Where the shipped folders are found (catga_bench/bundled.py): the wheel's copy first, else the
checkout's; and the commands that read them (``catga-bench scenarios``, ``gate``,
``dashboards``/``alerts build --check``, chaos experiments) use it when the working directory
has no folder of its own. The installed wheel itself: tests/integration/test_wheel.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from catga_bench import bundled
from catga_bench.bundled import BUNDLED, local_or_shipped, resource_dir, resource_path
from catga_bench.chaos.env import EnvironmentError_, resolve_file, resolve_scenario
from catga_bench.cli import main as cli_main
from catga_bench.errors import ConfigError
from catga_bench.observability.alerts import main as alerts_main
from catga_bench.observability.dashboards.cli import main as dashboards_main
from catga_bench.suite import cli as gate_cli
from catga_bench.targets.served.main import _scenario_dirs as serve_scenario_dirs

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def wheel_like(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``importlib.resources.files("catga_bench")`` answers a folder of our own (as in an
    installed wheel, where the shipped folders sit in catga_bench/_bundled/)."""
    package = tmp_path / "site-packages" / "catga_bench"
    package.mkdir(parents=True)
    real = bundled.importlib.resources.files

    def files(name: str) -> object:
        return package if name == "catga_bench" else real(name)

    monkeypatch.setattr(bundled.importlib.resources, "files", files)
    return package


@pytest.mark.parametrize("name", BUNDLED)
def test_a_checkout_gives_its_own_folders(name: str) -> None:
    assert resource_dir(name) == ROOT / name


def test_the_bundled_copy_wins_over_the_checkout(wheel_like: Path) -> None:
    shipped = wheel_like / "_bundled" / "scenarios"
    shipped.mkdir(parents=True)
    assert resource_dir("scenarios") == shipped
    assert resource_dir("alerts") == ROOT / "alerts"  # not bundled there: the checkout's


def test_neither_place_is_a_clear_error(wheel_like: Path, monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setattr(bundled, "CHECKOUT", tmp_path / "no-checkout")
    with pytest.raises(FileNotFoundError, match=r"no dashboards/ folder.*_bundled/dashboards"):
        resource_dir("dashboards")
    with pytest.raises(ValueError, match="unknown shipped folder 'docs'; allowed: scenarios"):
        resource_dir("docs")


def test_a_path_from_the_repository_root() -> None:
    spec = resource_path("scenarios/specs/catga-core.asyncapi.yaml")
    assert spec == ROOT / "scenarios" / "specs" / "catga-core.asyncapi.yaml"
    assert resource_path("examples/order-service-node/asyncapi.yaml") is not None
    assert resource_path("scenarios/no_such.py") is None
    assert resource_path("docs/sut.md") is None  # docs/ is not shipped
    assert resource_path("") is None


def test_the_working_directory_wins_when_it_has_the_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert local_or_shipped("scenarios") == ROOT / "scenarios"  # none here
    (tmp_path / "scenarios").mkdir()
    assert local_or_shipped("scenarios") == tmp_path / "scenarios"
    # a team's own scenarios/ without the gate's: the gate takes the shipped ones
    assert local_or_shipped("scenarios", marker="high_fanout.py") == ROOT / "scenarios"
    (tmp_path / "scenarios" / "high_fanout.py").write_text("")
    assert local_or_shipped("scenarios", marker="high_fanout.py") == tmp_path / "scenarios"


def test_scenarios_command_lists_the_shipped_ones_outside_a_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert cli_main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert str(ROOT / "scenarios" / "high_fanout.py") in out
    assert "120 handlers" in out  # its docstring
    assert cli_main(["scenarios", "--dir", "nowhere"]) == 2
    assert capsys.readouterr().err == "catga-bench: error: --dir: no such directory: nowhere\n"


def test_dashboards_and_alerts_check_the_shipped_files_outside_a_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert dashboards_main(["build", "--check"]) == 0
    assert alerts_main(["build", "--check"]) == 0
    out = capsys.readouterr().out
    assert f"{ROOT / 'dashboards'}: dashboards up to date" in out
    assert f"{ROOT / 'alerts'}: alert rules up to date" in out
    # an explicit --out still means that folder: empty, so everything is missing
    (tmp_path / "mine").mkdir()
    assert dashboards_main(["build", "--check", "--out", "mine"]) == 1
    assert alerts_main(["build", "--check", "--out", "mine"]) == 1
    assert not (tmp_path / "dashboards").exists()  # --check wrote nothing


def test_a_broken_install_is_one_line_and_exit_2(
        wheel_like: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(bundled, "CHECKOUT", tmp_path / "no-checkout")
    monkeypatch.chdir(tmp_path)
    assert cli_main(["scenarios"]) == 2
    assert dashboards_main(["build", "--check"]) == 2
    assert alerts_main(["build", "--check"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert [line.split(": error: ")[0] for line in err] == [
        "catga-bench", "catga-bench dashboards", "catga-bench alerts"]
    assert all("neither shipped in the installed package" in line for line in err)
    with pytest.raises(ConfigError, match=r"--scenarios: no scenarios/ folder: .*pass "
                                          r"--scenarios DIR"):
        gate_cli._scenario_dir(None)


def test_gate_takes_the_shipped_folders_outside_a_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scenarios").mkdir()  # a team's own, without the gate's scenarios
    assert gate_cli._scenario_dir(None) == ROOT / "scenarios"
    assert gate_cli._experiments_dir(None) == ROOT / "experiments"
    with pytest.raises(ConfigError, match="--scenarios: no such directory: nowhere"):
        gate_cli._scenario_dir("nowhere")


def test_serve_offers_the_shipped_scenarios_outside_a_checkout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert serve_scenario_dirs(None) == [ROOT / "scenarios"]
    assert serve_scenario_dirs(Path("nowhere")) == []  # only --scenario files then
    (tmp_path / "scenarios").mkdir()
    assert serve_scenario_dirs(None) == [tmp_path / "scenarios"]


def test_chaos_finds_shipped_scenarios_and_files_from_anywhere(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch
                                                                ) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_scenario("high_fanout", tmp_path) == ROOT / "scenarios" / "high_fanout.py"
    assert resolve_scenario("scenarios/overload.py", tmp_path) == \
        ROOT / "scenarios" / "overload.py"
    spec = resolve_file("examples/order-service-node/asyncapi.yaml", tmp_path)
    assert spec == ROOT / "examples" / "order-service-node" / "asyncapi.yaml"
    with pytest.raises(EnvironmentError_, match=r"unknown scenario 'nope'; known: .*high_fanout"):
        resolve_scenario("nope", tmp_path)
