"""gate/core/deferred.py: modules a gate never uses are created but not run until touched.

Checked on a package of our own whose __init__ imports a submodule eagerly, as numpy 1.x's does
(the dev install's numpy 2 already loads its submodules lazily, so it could not show the difference),
each in a fresh interpreter.
"""

import subprocess
import sys
import textwrap

from tests.conftest import REPO


def _run(tmp_path, body: str) -> str:
    pkg = tmp_path / "eager"
    pkg.mkdir(exist_ok=True)
    (pkg / "__init__.py").write_text("from . import heavy, light\n")
    (pkg / "heavy.py").write_text("import builtins\nbuiltins.RAN = getattr(builtins, 'RAN', 0) + 1\nVALUE = 42\n")
    (pkg / "light.py").write_text("VALUE = 1\n")
    code = "import builtins, sys\nfrom gate.core.deferred import defer\n" + textwrap.dedent(body)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={"PYTHONPATH": f"{tmp_path}:{REPO}", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def test_a_deferred_module_runs_only_when_first_touched_and_then_works(tmp_path):
    out = _run(tmp_path, """
        assert defer(["eager.heavy"])
        import eager
        print(getattr(builtins, "RAN", 0), "eager.heavy" in sys.modules)
        from eager import heavy          # the name binds without running it
        print(getattr(builtins, "RAN", 0))
        print(heavy.VALUE, builtins.RAN)  # the first attribute read runs it, once
        print(heavy.VALUE, builtins.RAN, eager.light.VALUE)
    """)
    assert out.splitlines() == ["0 True", "0", "42 1", "42 1 1"]


def test_without_defer_the_package_runs_it_eagerly(tmp_path):
    assert _run(tmp_path, "import eager\nprint(builtins.RAN)") == "1"


def test_defer_is_installed_once_and_never_for_what_is_already_imported(tmp_path):
    out = _run(tmp_path, """
        import eager
        print(defer(["eager.heavy"]), builtins.RAN)   # too late: already run, nothing installed
        print(defer(["json.decoder.nope"]), defer(["x.y"]))
    """)
    assert out.splitlines() == ["False 1", "True False"]


def test_gate_scan_defers_before_numpy_is_first_imported():
    """The scan handler installs the finder before its first heavy import: checked by running the
    handler on a config that does not exist (it fails after the imports, at loading the config)."""
    code = textwrap.dedent("""
        import sys, types
        from gate.cli import gatecmds
        from gate.core import deferred
        seen = []
        real = deferred.defer
        deferred.defer = lambda *a: seen.append("numpy" in sys.modules) or real(*a)
        try:
            gatecmds.scan(types.SimpleNamespace(config="/nonexistent/gate.toml", source=None, loop=False, json=False))
        except Exception as exc:
            print(type(exc).__name__)
        print(seen, "numpy" in sys.modules, "numpy.random.mtrand" in sys.modules,
              any(type(f).__name__ == "_DeferringFinder" for f in sys.meta_path))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["ConfigError", "[False] True False True"], r.stdout + r.stderr
