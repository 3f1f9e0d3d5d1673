"""Handler profiles, as scenario files name them: ``profiles.Fast()``, ``profiles.Failing(...)``,
``from catga_bench.profiles import HandlerSpec``.

The public face of :mod:`catga_bench.workload.profiles`, where they are defined (this module
only names them, so scenario files keep one stable import path).
"""

from catga_bench.workload.profiles import *  # noqa: F403
from catga_bench.workload.profiles import __all__  # noqa: F401
