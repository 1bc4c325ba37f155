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
    deep = pkg / "deep"   # a deferred package whose own code imports a submodule, as numpy.ma's imports core
    deep.mkdir(exist_ok=True)
    (deep / "__init__.py").write_text("from .part import Thing\n")
    (deep / "part.py").write_text("import builtins\nbuiltins.PARTS = getattr(builtins, 'PARTS', 0) + 1\n"
                                  "class Thing:\n    pass\n")
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


def test_a_submodule_imported_by_its_full_name_runs_once_and_is_the_packages_own(tmp_path):
    """`import numpy.ma.core` (or unpickling a masked array) before numpy.ma is touched: reading the
    package's __path__ runs the package, which imports the submodule; the import under way must take that
    module, not run it again into a second one whose classes the package does not hold."""
    out = _run(tmp_path, """
        import importlib
        assert defer(["eager.deep"])
        import eager
        import eager.deep.part as part
        print(builtins.PARTS, part is sys.modules["eager.deep.part"], part is eager.deep.part,
              eager.deep.Thing is part.Thing, type(part.__spec__.loader).__name__)
        print(importlib.reload(part) is part, builtins.PARTS)   # a reload still runs it again
    """)
    assert out.splitlines() == ["1 True True True SourceFileLoader", "True 2"]


def test_a_replayed_gate_scan_touches_none_of_the_deferred_modules(tmp_path):
    """What makes the deferral safe for a gate: nothing it runs touches these modules, so none is ever run,
    and Python 3.11's lazy modules, not safe for two threads touching one first at once, are never run by
    two threads. Were the scan path to start using one, this fails: defer it no more, or touch it at start."""
    import numpy as np
    from PIL import Image

    from gate.sim.render import compose
    from tests.conftest import TICKETS_CSV
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(5)
    for i, c in enumerate([None, "CODE-0001", "CODE-0001", None, "GARBAGE", None]):
        Image.fromarray(compose(c, "clean" if c else "empty", rng=rng)).save(frames / f"{i:03d}.png")
    (tmp_path / "tickets.csv").write_text(TICKETS_CSV)
    cfg = tmp_path / "g.toml"
    cfg.write_text(f'[gate]\nid="door-d"\nvenue="hall"\nevents=["eve"]\n[storage]\ndir="{tmp_path}/s"\n')
    code = textwrap.dedent(f"""
        import contextlib, io, sys, types
        from gate.cli.main import main
        from gate.core.deferred import UNUSED_BY_A_GATE
        assert main(["tickets", "import", "-c", {str(cfg)!r}, {str(tmp_path / "tickets.csv")!r}]) == 0
        with contextlib.redirect_stdout(io.StringIO()) as out:
            rc = main(["scan", "-c", {str(cfg)!r}, "--source", "replay:{frames}@30", "--json", "--offline"])
        assert rc == 0 and '"admitted"' in out.getvalue(), out.getvalue()
        print([n for n in UNUSED_BY_A_GATE if type(sys.modules.get(n)) is types.ModuleType])
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                       env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "GPIOZERO_PIN_FACTORY": "mock"})
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "[]", r.stdout + r.stderr


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
