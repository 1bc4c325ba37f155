"""`gate tickets issue`: mint signed ticket codes, a CSV and a QR PNG each (staff cards:
gate/boxoffice/staffcards.py)."""

from __future__ import annotations

import csv
import secrets
from pathlib import Path

import numpy as np

from gate.boxoffice.gt1 import sign_ticket
from gate.boxoffice.keys import load_private_key
from gate.boxoffice.ticketfile import parse_time
from gate.core.progress import Progress


def qr_png(code: str, path: Path, module_px: int = 6) -> int:
    """Write the code as a QR PNG (error correction M; zxing-cpp's C++ encoder picks
    alphanumeric mode for Base45); returns the QR version."""
    import zxingcpp
    from PIL import Image
    sym = zxingcpp.create_barcode(code, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    m = np.asarray(zxingcpp.write_barcode_to_image(sym, scale=1, add_quiet_zones=False))
    version = (m.shape[0] - 17) // 4
    m = np.pad(m, 4, constant_values=255)                     # quiet zone of 4 modules
    img = np.repeat(np.repeat(m, module_px, 0), module_px, 1)
    Image.fromarray(img).convert("1").save(path, optimize=False)
    return version


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

