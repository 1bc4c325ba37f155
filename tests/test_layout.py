"""The README's layout map lists every module of the package, each under its own room."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def layout_map_modules(readme: str) -> set[str]:
    """Module paths named in the code block of the README's "For developers" section: a line
    `gate/ROOM/ ...` opens a room, indented lines name files in it (`name.py`, several to a line)."""
    section = readme.split("## For developers", 1)[1]
    block = section.split("```", 2)[1]
    found, room = set(), None
    for line in block.splitlines():
        head = re.match(r"^(gate/(?:[a-z_]+/)?)\s", line + " ")
        if head:
            room = head.group(1)
            continue
        if room and line.startswith("  ") and line.strip():
            names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]   # the first column; the rest describes
            for name in re.findall(r"([a-z0-9_]+(?:/[a-z0-9_]+)*\.py)", names):
                found.add(room + name)
    return found


def package_modules() -> set[str]:
    return {str(p.relative_to(REPO)) for p in (REPO / "gate").rglob("*.py")
            if p.name not in ("__init__.py", "__main__.py")}


def test_layout_readme_map_lists_every_module():
    listed = layout_map_modules((REPO / "README.md").read_text(encoding="utf-8"))
    missing = sorted(package_modules() - listed)
    stale = sorted(listed - package_modules())
    assert not missing and not stale, f"missing from the README's layout map: {missing}; listed but gone: {stale}"


def test_layout_map_reader_sees_a_missing_module():
    readme = "## For developers\n```\ngate/core/   kernel\n  clock.py   time\n```\n"
    assert layout_map_modules(readme) == {"gate/core/clock.py"}
