"""The gate on the Pi's own architecture: `gate scan`'s resident memory and its start-up (first frame
decided, READY) in the arm64 VM of `make test-system-arm64`, beside the targets and, from the same run,
the anchors that bound them: the interpreter alone, and the imports no gate can do without (numpy, the
decoder, gpiozero, sqlite3), timed the same way in the same VM.

    .venv/bin/python bench/bench_gate_arm64.py --run           boots the VM (root or sudo; 8-18 min)
    .venv/bin/python bench/bench_gate_arm64.py --log FILE      reads the figures of a run already made

Under qemu's TCG emulation everything runs many times slower than on a Pi, so the start-up figure is
only comparable with the anchors beside it; memory is what a Pi would see.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RSS_TARGET_MB = 55.0
READY_TARGET_MS = 2000


def figures(text: str) -> dict[str, str]:
    return dict(re.findall(r"^figure (\S+) (\S+)$", text, re.M))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", action="store_true", help="run make test-system-arm64 now")
    ap.add_argument("--log", help="the output of an earlier make test-system-arm64")
    a = ap.parse_args()
    if a.run:
        r = subprocess.run([str(ROOT / "scripts/test-system-arm64")], cwd=ROOT, capture_output=True, text=True)
        text = r.stdout + r.stderr
        if r.returncode != 0:
            print(text[-3000:])
            print(f"make test-system-arm64 failed ({r.returncode})")
            return 1
    elif a.log:
        text = Path(a.log).read_text()
    else:
        print("not run: --run boots the arm64 VM (root or sudo, 8-18 min); --log FILE reads an earlier run")
        return 0
    f = figures(text)
    need = ("rss_gate-scan_mb", "ready_ms")
    if any(k not in f for k in need):
        print(f"the run has no {', '.join(k for k in need if k not in f)} figure(s)")
        return 1
    rss, ready = float(f["rss_gate-scan_mb"]), int(f["ready_ms"])
    print(f"gate scan, arm64 VM (cryptography from {f.get('cryptography_from', '?')}):")
    print(f"  resident after a minute of scanning  {rss:6.1f} MB   target <= {RSS_TARGET_MB:.0f} MB: "
          f"{'met' if rss <= RSS_TARGET_MB else 'NOT met'}   (anonymous {f.get('rss_gate-scan_anon_mb', '?')} MB, "
          f"file-backed {f.get('rss_gate-scan_file_mb', '?')} MB)")
    print(f"  start to READY (first frame decided) {ready / 1000:6.2f} s    target <= {READY_TARGET_MS / 1000:.0f} s: "
          f"{'met' if ready <= READY_TARGET_MS else 'NOT met'}")
    split = re.search(r"ready: first frame decided (.*)$", text, re.M)
    if split:
        print(f"  ... the gate's own ready line: {split.group(1)}")
    later = re.search(r"gate-scan after 120 s: VmRSS: ([0-9.]+) MB", text)
    if later:
        print(f"  resident after two minutes           {float(later.group(1)):6.1f} MB")
    if "python_floor_imports_ms" in f:
        print(f"  anchors, same VM: python -c pass {int(f['python_start_ms']) / 1000:.2f} s; "
              f"import numpy, zxingcpp, gpiozero, sqlite3 {int(f['python_floor_imports_ms']) / 1000:.2f} s; "
              f"the gate's own imports {int(f.get('gate_imports_ms', 0)) / 1000:.2f} s")
    else:
        print("  (a run from before the start-up anchors were measured)")
    print(f"  gate house resident at the same moment {f.get('rss_gate-house_mb', '?')} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
