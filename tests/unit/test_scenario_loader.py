"""The served core reads scenario files as data: same scenarios, and Locust never imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from catga_bench.workload.loader import load_scenarios

ROOT = Path(__file__).resolve().parents[2]


def test_every_shipped_scenario_loads_as_data() -> None:
    found = load_scenarios([ROOT / "scenarios", ROOT / "experiments" / "scenarios"])
    assert {"high_fanout", "high_throughput", "slow_handlers", "failing_handlers", "overload",
            "exactly_once"} <= set(found)
    assert len(found) == len(list((ROOT / "scenarios").glob("[!_]*.py"))) + len(
        list((ROOT / "experiments" / "scenarios").glob("[!_]*.py")))
    # a black box's streams come from its document: it names one instead
    assert all(s.streams if s.sut == "core" else s.sut_spec and Path(s.sut_spec).is_file()
               for s in found.values())


def test_the_served_core_does_not_import_locust() -> None:
    code = (
        "import sys; from pathlib import Path\n"
        "import catga_bench.targets.served.main as m\n"
        f"s = m.load_scenarios([Path({str(ROOT / 'scenarios')!r})])\n"
        "assert s, 'no scenario'\n"
        "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('locust', 'gevent'))\n"
        "print(' '.join(bad) or 'clean')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.strip()
    assert out == "clean"


def test_a_named_file_without_a_scenario_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "nothing.py"
    f.write_text("X = 1\n")
    with pytest.raises(ValueError, match="declares no CatgaUser"):
        load_scenarios([f])
