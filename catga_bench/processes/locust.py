"""The headless Locust command line the harness starts: one scenario file run in a subprocess
with this interpreter, writing report.json/md/html to a directory. The release gate
(``catga-bench gate``) and the chaos experiments' background load both build it here."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path


def locust_command(scenario_file: Path, *, users: int, run_time_s: int, report_dir: Path,
                   spawn_rate: int | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The argv of ``python -m locust -f SCENARIO --headless -u USERS -r RATE -t Ns
    --only-summary --report-dir DIR EXTRA...``.

    Args:
        scenario_file: the locustfile (``scenarios/<name>.py``).
        users: simulated users (``-u``).
        run_time_s: run length in whole seconds (``-t``).
        report_dir: where the run writes its reports (``--report-dir``).
        spawn_rate: users started per second (``-r``); default ``users`` (all at once).
        extra: more options, in order, after the fixed ones (``--qos 1``,
            :func:`transport_options`, ...).

    Returns:
        The command line, ``sys.executable`` first.
    """
    rate = users if spawn_rate is None else spawn_rate
    return [sys.executable, "-m", "locust", "-f", str(scenario_file), "--headless",
            "-u", str(users), "-r", str(rate), "-t", f"{run_time_s}s",
            "--only-summary", "--report-dir", str(report_dir), *extra]


def transport_options(transport: str, url: str) -> list[str]:
    """``--transport T --T-url URL``: the generator's options to drive a core over broker ``T``
    (``nats`` or ``redis``) at ``url``."""
    return ["--transport", transport, f"--{transport}-url", url]
