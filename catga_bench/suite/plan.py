"""What the release gate runs: the (case, transport) pairs chosen, the fault matrix's cells
and the waves they run in. Raises :class:`~catga_bench.errors.ConfigError` when the choice
leaves nothing to run."""

from __future__ import annotations

from collections.abc import Callable

from catga_bench.errors import ConfigError
from catga_bench.suite.cases import BROKERS, CASES, FAULTS, Case, Fault


def plan(cases: list[str] | None, transports: list[str]) -> list[tuple[Case, str]]:
    """The (case, transport) pairs to run, transports in the order given."""
    chosen = [c for c in CASES if cases is None or c.name in cases]
    runs = [(c, t) for t in transports for c in chosen if t in c.transports]
    if cases is not None:
        for name in cases:
            case = next(c for c in CASES if c.name == name)
            if not any(t in case.transports for t in transports):
                raise ConfigError(f"--only {name}: runs on {', '.join(case.transports)}; add "
                                  f"--transports {case.transports[0]}")
    if not runs:
        raise ConfigError("nothing to run")
    return runs


def plan_faults(faults: list[str], transports: list[str]) -> list[tuple[Fault, str]]:
    """The fault matrix: (fault, transport) for every broker transport (in the order given)
    and every fault chosen; embedded is skipped (the experiments need a broker)."""
    brokers = [t for t in transports if t in BROKERS]
    if not brokers:
        raise ConfigError(f"--faults: the fault matrix runs over a broker only "
                          f"({', '.join(BROKERS)}); add --transports nats,redis")
    chosen = [f for f in FAULTS if f.name in faults]
    if not chosen:
        raise ConfigError("--faults: nothing to run")
    return [(f, t) for t in brokers for f in chosen]


def schedule_faults(fault_runs: list[tuple[Fault, str]], jobs: int,
                    seconds: Callable[[Fault], float] | None = None,
                    ) -> list[list[tuple[int, Fault, str]]]:
    """Waves of (index in ``fault_runs``, fault, transport) to run concurrently: each
    exclusive cell alone, the others ``jobs`` at a time. A wave lasts as long as its longest
    cell, so with ``seconds`` (a cell's run length) the shared cells go longest first, the
    same fault on each broker side by side (a 22 s partition beside another, not beside an
    11 s cell); without it, in plan order."""
    if jobs < 1:
        raise ConfigError(f"--jobs: must be >= 1, got {jobs}")
    waves: list[list[tuple[int, Fault, str]]] = []
    shared: list[tuple[int, Fault, str]] = []
    for i, (fault, transport) in enumerate(fault_runs):
        if fault.exclusive or jobs == 1:
            waves.append([(i, fault, transport)])
        else:
            shared.append((i, fault, transport))
    if seconds is not None:
        shared.sort(key=lambda cell: (-seconds(cell[1]), cell[1].name))
    waves += [shared[k:k + jobs] for k in range(0, len(shared), jobs)]
    return waves
