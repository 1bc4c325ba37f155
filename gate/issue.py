"""`gate tickets issue`: mint signed ticket codes, a CSV and a QR PNG each."""

from __future__ import annotations

import csv
import secrets
from pathlib import Path

import numpy as np

from .progress import Progress
from .signing import load_private_key, sign_ticket
from .tickets import parse_time


def qr_png(code: str, path: Path, module_px: int = 6) -> int:
    """Write the code as a QR PNG (alphanumeric mode when it fits); returns the QR version."""
    import segno
    from PIL import Image
    qr = segno.make_qr(code, error="m")
    m = np.array([[bool(v) for v in row] for row in qr.matrix_iter(border=4)], dtype=bool)
    img = np.kron(np.where(m, 0, 255).astype(np.uint8), np.ones((module_px, module_px), np.uint8))
    Image.fromarray(img).save(path, optimize=False, compress_level=1)
    return qr.version


def issue(args) -> int:
    key = load_private_key(args.key)
    vf = parse_time(args.valid_from) // 1000 if args.valid_from else 0
    vu = parse_time(args.valid_until) // 1000 if args.valid_until else 0
    out = Path(args.out)
    (out / "qr").mkdir(parents=True, exist_ok=True)
    prefix = args.prefix or args.event[:12]
    progress = Progress(f"issuing {args.event}", args.count)
    versions: dict[int, int] = {}
    with open(out / "tickets.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["ticket_id", "code", "event", "zone", "valid_from", "valid_until", "status"])
        for i in range(1, args.count + 1):
            tid = f"{prefix}-{i:06d}-{secrets.token_hex(2)}"
            code = sign_ticket(key, tid, args.event, args.zone, vf, vu)
            w.writerow([tid, code, args.event, args.zone, args.valid_from or "", args.valid_until or "", "valid"])
            if not args.no_png:
                v = qr_png(code, out / "qr" / f"{tid}.png")
                versions[v] = versions.get(v, 0) + 1
            progress(i)
    progress.done(f"{args.count:,} tickets written to {out}")
    if versions:
        print("QR symbol versions: " + ", ".join(f"v{v}: {n}" for v, n in sorted(versions.items())))
    return 0
