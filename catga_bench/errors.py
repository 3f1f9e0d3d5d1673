"""The toolkit's errors and exit codes, in one place (shared/DESIGN.md, "SLO targets and the gate").

Exit codes of every command that judges (``locust -f scenarios/X.py``, ``catga-bench gate``,
``catga-bench chaos run``, ``catga-bench bench-brokers``, ``catga-bench serve``):

========================  =====  ==========================================================
name                      value  meaning
========================  =====  ==========================================================
``EXIT_PASS``             0      every target met (``serve``: stopped cleanly)
``EXIT_FAIL``             1      a target missed
``EXIT_USAGE``            2      usage or configuration error (:class:`ConfigError`)
``EXIT_ENVIRONMENT``      3      no verdict: broker unreachable, system under test not
                                 ready, generator could not offer the load
========================  =====  ==========================================================
"""

from __future__ import annotations

EXIT_PASS, EXIT_FAIL, EXIT_USAGE, EXIT_ENVIRONMENT = 0, 1, 2, 3


class ConfigError(ValueError):
    """Bad configuration or usage: the message names the field and what is allowed (exit 2)."""


__all__ = ["EXIT_ENVIRONMENT", "EXIT_FAIL", "EXIT_PASS", "EXIT_USAGE", "ConfigError"]
