"""``catga-bench init``: scaffold a team's repository for a performance gate (:mod:`.cli`).

The templates it copies are data files of this package (``templates/``): the scenario, an
AsyncAPI 3 template of the team's service, an SLO file, a chaos experiment, the CI shell script
and a GitHub Actions workflow.
"""

from catga_bench.scaffold.cli import FILES, main, write

__all__ = ["FILES", "main", "write"]
