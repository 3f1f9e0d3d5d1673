"""Build configuration beyond pyproject.toml: the repository's data folders travel inside the
wheel.

``scenarios/``, ``experiments/``, ``dashboards/``, ``alerts/`` and ``examples/`` stay where they
are in the repository; the build maps each onto ``catga_bench/_bundled/<folder>/`` of the wheel
(setuptools ``package_dir`` + ``package_data``), so an installed ``catga-bench`` finds them
through ``importlib.resources`` (:func:`catga_bench.bundled.resource_dir`). ``examples/`` goes
too: the shipped ``scenarios/black_box_orders.py``, ``scenarios/http_orders.py`` and
``experiments/black_box_partition.yaml`` point at ``../examples/order-service-node``.

Everything else (name, dependencies, entry points) is in pyproject.toml.
"""

from setuptools import find_packages, setup

#: repository folders shipped as data, each at catga_bench/_bundled/<name>/ in the wheel
BUNDLED = ("scenarios", "experiments", "dashboards", "alerts", "examples")

setup(
    packages=[*find_packages(include=["core", "core.*", "catga_bench", "catga_bench.*"]),
              *(f"catga_bench._bundled.{name}" for name in BUNDLED)],
    package_dir={f"catga_bench._bundled.{name}": name for name in BUNDLED},
    package_data={**{f"catga_bench._bundled.{name}": ["**/*"] for name in BUNDLED},
                  "catga_bench.scaffold": ["templates/*"]},  # catga-bench init's files
    exclude_package_data={"": ["**/__pycache__/*", "**/*.pyc", "**/node_modules/**"]},
)
