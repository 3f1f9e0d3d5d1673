"""Build configuration beyond pyproject.toml: the repository's data folders travel inside the
wheel.

``scenarios/``, ``experiments/``, ``dashboards/``, ``alerts/`` and ``examples/`` stay where they
are in the repository; the build maps each onto ``catga_bench/_bundled/<folder>/`` of the wheel
(setuptools ``package_dir`` + ``package_data``), so an installed ``catga-bench`` finds them
through ``importlib.resources`` (:func:`catga_bench.bundled.resource_dir`). ``examples/`` goes
too: the shipped ``scenarios/black_box_orders.py``, ``scenarios/http_orders.py`` and
``experiments/black_box_partition.yaml`` point at ``../examples/order-service-node``.
``catga-bench init``'s templates (``catga_bench/scaffold/templates/``) are package data too.

Everything else (name, dependencies, entry points) is in pyproject.toml.
"""

from pathlib import Path

from setuptools import find_packages, setup

#: repository folders shipped as data, each at catga_bench/_bundled/<name>/ in the wheel
BUNDLED = ("scenarios", "experiments", "dashboards", "alerts", "examples")
#: never shipped: caches and installed npm dependencies
SKIP = {"__pycache__", "node_modules"}


def data_tree(package: str, folder: Path) -> tuple[list[str], dict[str, list[str]]]:
    """``(packages, package_data)`` shipping every file under ``folder`` as ``package``: each
    subfolder named like a Python identifier is a package of its own (setuptools warns about
    an importable folder missing from ``packages``), any other (``order-service-node``) is
    data of its parent."""
    packages, data = [package], {package: ["*"]}
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in SKIP):
        if child.name.isidentifier():
            more, more_data = data_tree(f"{package}.{child.name}", child)
            packages += more
            data.update(more_data)
        else:
            data[package].append(f"{child.name}/**/*")
    return packages, data


packages = find_packages(include=["core", "core.*", "catga_bench", "catga_bench.*"])
package_data: dict[str, list[str]] = {}
for name in (*BUNDLED, "catga_bench/scaffold/templates"):
    package = name.replace("/", ".") if "/" in name else f"catga_bench._bundled.{name}"
    more, more_data = data_tree(package, Path(name))
    packages += more
    package_data.update(more_data)

setup(
    packages=packages,
    package_dir={f"catga_bench._bundled.{name}": name for name in BUNDLED},
    package_data=package_data,
    exclude_package_data={"": ["*.pyc", "**/__pycache__/*", "**/node_modules/**"]},
)
