"""Where the repository's data folders are at run time: shipped inside the wheel, or in the
checkout this package runs from.

The wheel carries ``scenarios/``, ``experiments/``, ``dashboards/``, ``alerts/`` and
``examples/`` as ``catga_bench/_bundled/<folder>/`` (mapped there by setup.py; the repository
layout stays as it is). :func:`resource_dir` prefers that copy, found through
:mod:`importlib.resources`, and otherwise takes the folder beside the ``catga_bench`` package
(a checkout, or an editable install of one). Both places have the same layout, so a path
relative to the repository root (``scenarios/specs/x.yaml``, ``../examples/...`` from an
experiment) means the same file in either.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

#: the repository folders shipped in the wheel (catga_bench/_bundled/<name>/)
BUNDLED = ("scenarios", "experiments", "dashboards", "alerts", "examples")
#: the checkout's root when this package runs from one (the folder holding ``catga_bench/``)
CHECKOUT = Path(__file__).resolve().parent.parent


def _bundled(name: str) -> Path | None:
    """The wheel's copy of ``name`` (a real directory), or None (a checkout has none)."""
    ref = importlib.resources.files("catga_bench").joinpath("_bundled", name)
    return ref if isinstance(ref, Path) and ref.is_dir() else None


def resource_dir(name: str) -> Path:
    """The shipped folder ``name`` (one of :data:`BUNDLED`), as an absolute path.

    Returns:
        ``<site-packages>/catga_bench/_bundled/<name>`` in an installed wheel, else
        ``<checkout>/<name>``.

    Raises:
        ValueError: ``name`` is not one of :data:`BUNDLED`.
        FileNotFoundError: neither place has it (a broken install); the message names both.
    """
    if name not in BUNDLED:
        raise ValueError(f"unknown shipped folder {name!r}; allowed: {', '.join(BUNDLED)}")
    found = _bundled(name)
    if found is not None:
        return found
    checkout = CHECKOUT / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"no {name}/ folder: neither shipped in the installed package "
                            f"(catga_bench/_bundled/{name}) nor in a checkout ({checkout})")


def resource_path(ref: str | Path) -> Path | None:
    """A path relative to the repository root (``scenarios/high_fanout.py``,
    ``examples/order-service-node/asyncapi.yaml``) in the shipped folders; None when its first
    part is not one of :data:`BUNDLED` or the file or folder does not exist there."""
    parts = Path(ref).parts
    if not parts or parts[0] not in BUNDLED:
        return None
    try:
        path = resource_dir(parts[0]).joinpath(*parts[1:])
    except FileNotFoundError:
        return None
    return path if path.exists() else None


def local_or_shipped(name: str, marker: str | None = None) -> Path:
    """``./<name>`` when the working directory has that folder (holding ``marker``, a file
    name, when given), else the shipped one (:func:`resource_dir`); absolute.

    The commands' defaults (``catga-bench scenarios``, ``gate``, ``dashboards build --check``)
    use it: a checkout or a team repository with its own folder gets its own, anywhere else
    the copy that came with the package.

    Raises:
        FileNotFoundError: neither exists (see :func:`resource_dir`).
    """
    local = Path(name)
    if local.is_dir() and (marker is None or (local / marker).exists()):
        return local.resolve()
    return resource_dir(name)


__all__ = ["BUNDLED", "CHECKOUT", "local_or_shipped", "resource_dir", "resource_path"]
