"""A real pretix server for the tests: its own venv, SQLite, no Redis/Celery.

The venv and a migrated empty database are built once and cached under the repo's
gitignored `.cache/pretix/<version>/` (`migrate` takes about a minute; installing pretix a
few). Each server copies that database, so every server starts clean in seconds. Test data
is made with a Django script run in pretix's own venv (tests/pretix_seed.py): two things,
signed secrets and blocking a position, cannot be done through pretix's REST API.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from tests.conftest import free_port

PRETIX_VERSION = "2026.8.0"
REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("GATE_TEST_CACHE", REPO / ".cache")) / "pretix" / PRETIX_VERSION
SEED = Path(__file__).resolve().parent / "pretix_seed.py"


def _config(datadir: Path, port: int) -> str:
    return (f"[pretix]\ninstance_name=gate-test\nurl=http://127.0.0.1:{port}\ndatadir={datadir}\n"
            f"ecb_rates=off\ncurrency=EUR\n\n[database]\nbackend=sqlite3\nname={datadir}/db.sqlite3\n\n"
            f"[django]\ndebug=off\n\n[mail]\nfrom=gate@localhost\nhost=127.0.0.1\nport=1\n")


def ensure_installed(log=print) -> Path:
    """The cached venv and migrated database, made on first use (a lock keeps parallel runs apart)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        venv = CACHE / "venv"
        if not (venv / ".installed").exists():
            t0 = time.monotonic()
            log(f"pretix test server: installing pretix {PRETIX_VERSION} into {venv} (once, a few minutes)")
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(venv / "bin/python"), "-m", "pip", "install", "-q", f"pretix=={PRETIX_VERSION}"],
                           check=True)
            (venv / ".installed").write_text(f"{time.monotonic() - t0:.0f} s\n")
        db = CACHE / "migrated.sqlite3"
        if not db.exists():
            t0 = time.monotonic()
            log("pretix test server: migrating an empty database (once, about a minute)")
            work = CACHE / "migrate"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            (work / "pretix.cfg").write_text(_config(work, 1))
            subprocess.run([str(venv / "bin/python"), "-m", "pretix", "migrate", "--noinput"], check=True,
                           env=_env(work / "pretix.cfg"), stdout=subprocess.DEVNULL, cwd=work)
            shutil.copy(work / "db.sqlite3", CACHE / "migrated.tmp")
            os.replace(CACHE / "migrated.tmp", db)
            shutil.rmtree(work, ignore_errors=True)
            (CACHE / "migrate.seconds").write_text(f"{time.monotonic() - t0:.0f}\n")
    return CACHE


def _env(cfg: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(PRETIX_CONFIG_FILE=str(cfg), DJANGO_SETTINGS_MODULE="pretix.settings", PYTHONUNBUFFERED="1")
    return env


class PretixServer:
    """One pretix server on a free port, from a copy of the cached migrated database."""

    def __init__(self, workdir: Path):
        ensure_installed()
        # pretix commits (and fsyncs) several times per check-in: on a RAM disk, where there is
        # one, its SQLite answers about twice as fast.
        ram = Path("/dev/shm")
        self.workdir = Path(tempfile.mkdtemp(prefix="gate-pretix-", dir=ram)) if ram.is_dir() else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cfg = self.workdir / "pretix.cfg"
        self.cfg.write_text(_config(self.workdir, self.port))
        shutil.copy(CACHE / "migrated.sqlite3", self.workdir / "db.sqlite3")
        self.python = str(CACHE / "venv/bin/python")
        self.proc = None
        self.started_in = 0.0

    def start(self, timeout: float = 90.0) -> None:
        t0 = time.monotonic()
        self.log = open(self.workdir / "server.log", "ab")
        self.proc = subprocess.Popen(
            [self.python, "-m", "pretix", "runserver", "--noreload", "--nothreading", f"127.0.0.1:{self.port}"],
            env=_env(self.cfg), stdout=self.log, stderr=subprocess.STDOUT, cwd=self.workdir,
            start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pretix exited ({self.proc.returncode}); see {self.workdir}/server.log")
            try:
                with urllib.request.urlopen(self.url + "/api/v1/", timeout=2) as r:
                    if r.status < 500:
                        break
            except urllib.error.HTTPError as exc:
                if exc.code < 500:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise RuntimeError(f"pretix did not answer within {timeout} s")
        self.started_in = time.monotonic() - t0

    def kill(self) -> None:
        """SIGKILL, as a crash or a pulled plug would."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if getattr(self, "log", None):
            self.log.close()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def seed(self, spec: dict) -> dict:
        """Run tests/pretix_seed.py in pretix's venv against this server's database."""
        r = subprocess.run([self.python, str(SEED)], input=json.dumps(spec), capture_output=True, text=True,
                           env=_env(self.cfg), cwd=self.workdir, timeout=300)
        if r.returncode != 0:
            raise RuntimeError(f"pretix seed script failed:\n{r.stderr[-3000:]}")
        return json.loads(r.stdout.strip().splitlines()[-1])
