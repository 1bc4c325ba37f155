"""Start-up cost of the two programs that run for hours: `gate scan` and `gate house`.

For each program, measured on this tree and on an earlier commit (the anchor,
checked out into a temporary worktree) in the same run, with the same Python
and the same installed packages:

- import time: the sum of the top-level `-X importtime` entries of a real run
  (everything the command imported, as the interpreter timed it);
- peak RSS (the kernel's ru_maxrss of the finished process): `gate scan`
  scans a 3 s replay of empty frames at 30 fps with MQTT off and then ends;
  `gate house` runs for 3 s (its broker absent: it keeps retrying) and is
  stopped with SIGTERM.

    .venv/bin/python bench/bench_footprint.py [--anchor af47eca] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

GATE_CFG = """[gate]\nid = "bench"\nvenue = "hall"\nevents = ["eve"]\n[mqtt]\nenabled = false
[storage]\ndir = "{dir}"\n"""
HOUSE_CFG = """[house]\nvenue = "hall"\nlisten = "127.0.0.1:{listen}"\n[mqtt]\nhost = "127.0.0.1"\nport = {port}
[storage]\ndir = "{dir}"\n"""


def run(tree: Path, args: list[str], *, stop_after: float | None = None) -> tuple[float, float]:
    """(import ms, peak RSS MB) of one run of `python -X importtime -m gate.cli ARGS` in `tree`."""
    env = dict(os.environ, PYTHONPATH=str(tree), GPIOZERO_PIN_FACTORY="mock")
    p = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "gate.cli", *args], cwd=tree, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if stop_after is not None:
        time.sleep(stop_after)
        os.kill(p.pid, signal.SIGTERM)   # not send_signal: its poll() would reap the child before wait4
    _, status, usage = os.wait4(p.pid, 0)
    err = p.stderr.read()
    p.stderr.close()
    p.returncode = os.waitstatus_to_exitcode(status)
    total_us = 0
    for line in err.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and m.group(3) == "":           # top-level entries: cumulative times of everything
            total_us += int(m.group(2))
    if p.returncode not in (0, -signal.SIGTERM, 128 + signal.SIGTERM):
        tail = "\n".join(l for l in err.splitlines() if not l.startswith("import time"))[-800:]
        raise SystemExit(f"{' '.join(args)} in {tree} failed ({p.returncode}):\n{tail}")
    return total_us / 1000, usage.ru_maxrss / 1024


def measure(tree: Path, work: Path, runs: int) -> dict:
    frames = work / "frames"
    if not frames.exists():
        frames.mkdir()
        for i in range(90):
            Image.fromarray(np.full((480, 640), 128, np.uint8)).save(frames / f"{i:04d}.png")
    out = {}
    for name, cfg_text, args, stop in (
            ("gate scan", GATE_CFG, ["scan", "-c", "{cfg}", "--source", f"replay:{frames}@30"], None),
            ("gate house", HOUSE_CFG, ["house", "-c", "{cfg}"], 3.0)):
        imp, rss = [], []
        for i in range(runs):
            d = work / f"{tree.name}-{name.split()[1]}-{i}"
            d.mkdir()
            cfg = d / "config.toml"
            cfg.write_text(cfg_text.format(dir=d / "state", port=1, listen=free_port()))
            a, b = run(tree, [x.format(cfg=cfg) for x in args], stop_after=stop)
            imp.append(a)
            rss.append(b)
        out[name] = (statistics.median(imp), min(imp), max(imp), statistics.median(rss))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--anchor", default="af47eca", help="the commit to compare with (before the layout work)")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gate-footprint-") as tmp:
        tmp = Path(tmp)
        anchor = tmp / "anchor"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(anchor), a.anchor],
                       check=True)
        try:
            before = measure(anchor, tmp, a.runs)
            after = measure(REPO, tmp, a.runs)
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(anchor)], check=False)
    print(f"median of {a.runs} runs each, same interpreter and packages; anchor = {a.anchor}")
    print(f"{'':12} {'import ms (min-max)':>26} {'':6} {'peak RSS MB':>24}")
    print(f"{'':12} {'anchor':>12} {'this tree':>13} {'':6} {'anchor':>10} {'this tree':>12}")
    for name in before:
        bi, bmin, bmax, brss = before[name]
        ai, amin, amax, arss = after[name]
        print(f"{name:12} {bi:7.0f} ({bmin:.0f}-{bmax:.0f}) {ai:6.0f} ({amin:.0f}-{amax:.0f})  "
              f"{ai / bi:4.2f}x {brss:9.1f} {arss:12.1f}  {arss / brss:4.2f}x")


if __name__ == "__main__":
    main()
