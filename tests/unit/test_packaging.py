"""What an installed masd contains: every package of the source tree is listed for the wheel.

pyproject.toml names its packages one by one (adapters/ is installed as masd_adapters), so a new
sub-package left out of the list would work in the editable checkout and be missing from a real install.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _source_packages() -> set[str]:
    found = set()
    for top, name in (("masd", "masd"), ("adapters", "masd_adapters")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            found.add(".".join((name, *rel.parts)))
    return found


def test_every_source_package_is_in_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    missing = _source_packages() - listed
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_the_wheel_lists_no_package_that_is_gone() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert listed - _source_packages() == set()
