"""`gate staff issue` and `gate staff revoke`: the box office's side of staff cards.

A card is printed as its QR code with what it is written under it (who holds it, what
it does, the venue, until when it is valid, its id): the duty manager can see at a
glance which card has expired and which id to revoke. The same facts are in the
PNG's text chunks, for tools.

Revoking a card records it with the publisher (gate/boxoffice/revokedcards.py) and
then publishes at once: the ticket list retained on the broker, verified, signed again
as this publisher's next list with the revocation in it (its tickets untouched), so
every gate has it within seconds of hearing the list.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from gate.boxoffice.revokedcards import CARD_ID_RE, revocation_end
from gate.boxoffice.staff import ACTIONS, DEFAULT_LIFETIME_DAYS, MAX_LIFETIME_DAYS, new_card_id, sign_card
from gate.boxoffice.ticketfile import parse_time
from gate.core.errors import GateError

RETAINED_WAIT_S = 5.0   # how long `gate staff revoke` waits for the retained list


def card_png(code: str, path: Path, lines: list[str], meta: dict[str, str], module_px: int = 6) -> None:
    """The card's QR (as gate/boxoffice/issue.py draws tickets) with `lines` printed beneath it."""
    import zxingcpp
    from PIL import Image, ImageDraw, ImageFont
    from PIL.PngImagePlugin import PngInfo
    sym = zxingcpp.create_barcode(code, zxingcpp.BarcodeFormat.QRCode, ec_level="M")
    m = np.pad(np.asarray(zxingcpp.write_barcode_to_image(sym, scale=1, add_quiet_zones=False)), 4,
               constant_values=255)
    qr = Image.fromarray(np.repeat(np.repeat(m, module_px, 0), module_px, 1)).convert("L")
    size = max(14, qr.width // 18)
    font = ImageFont.load_default(size=size)
    width = max([qr.width] + [int(font.getlength(t)) + 2 * size for t in lines])
    img = Image.new("L", (width, qr.height + (len(lines) + 1) * int(size * 1.4)), 255)
    img.paste(qr, ((width - qr.width) // 2, 0))
    draw = ImageDraw.Draw(img)
    for i, text in enumerate(lines):
        draw.text((size, qr.height + i * int(size * 1.4)), text, fill=0, font=font)
    info = PngInfo()
    for k, v in meta.items():
        info.add_text(k, v)
    img.convert("1").save(path, pnginfo=info, optimize=False)


def lifetime(issued: int, valid_until: str = "", valid_days: float = DEFAULT_LIFETIME_DAYS) -> int:
    """A card's end (unix seconds) from --valid-until or --valid-days; ValueError when out of range."""
    until = parse_time(valid_until) // 1000 if valid_until else issued + int(valid_days * 86400)
    if until <= issued:
        raise ValueError("a staff card must end in the future (--valid-until / --valid-days)")
    if until - issued > MAX_LIFETIME_DAYS * 86400:
        raise ValueError(f"a staff card lives at most {MAX_LIFETIME_DAYS} days; print new cards instead")
    return until


def issue_staff(args, venue: str) -> int:
    """`gate staff issue`: one card per action for `venue`, each a PNG; prints action, file, card id, code."""
    from gate.boxoffice.keys import load_private_key
    key = load_private_key(args.key)
    issued = int(time.time())
    until = lifetime(issued, args.valid_until, args.valid_days)
    actions = list(ACTIONS) if args.action == ["all"] else args.action
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", args.name).strip("-") or "staff"
    ends = time.strftime("%Y-%m-%d %H:%M %Z", time.localtime(until))
    for action in actions:
        card_id = new_card_id()
        code = sign_card(key, venue, args.name, action, issued, until, card_id)
        path = out / f"staff-{slug}-{action}.png"
        card_png(code, path, [f"STAFF {action.upper()}: {args.name}", f"venue {venue}", f"valid until {ends}",
                              f"card {card_id}"],
                 {"gate-card-id": card_id, "gate-action": action, "gate-venue": venue,
                  "gate-valid-until": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(until))})
        print(f"{action}\t{path}\t{card_id}\t{code}")
    print(f"valid until {ends}; revoke a lost card with `gate staff revoke -c CONFIG CARD_ID`")
    return 0


def revoke_staff(cfg, card_ids: list[str], allow_empty: bool = False, session=None) -> tuple[str, int]:
    """`gate staff revoke`: record the cards as revoked and publish them in the ticket list at once;
    returns the list's (series, seq). Through `session` (an open gate.bus.publisher.BusSession: the box
    office's one connection, so the command can then wait for the gates to apply it)."""
    from gate.boxoffice.lists import verify_list
    from gate.boxoffice.publish import ListPublisher
    from gate.bus import topics
    ids = [c.strip().lower() for c in card_ids]
    bad = [c for c in ids if not CARD_ID_RE.match(c)]
    if bad:
        raise ValueError(f"not a card id (16 hex digits, printed on the card and by `gate staff issue`): {bad[0]!r}")
    pub = ListPublisher.from_config(cfg, role="boxoffice")
    end = revocation_end(int(time.time()))
    pub.revoked_cards.add([(c, end) for c in ids])
    staff = pub.revoked_cards.entries()
    print(f"recorded: {len(ids)} card(s) revoked ({len(staff)} in force) in {pub.revoked_cards.path}")
    if session is not None:
        from gate.boxoffice.lists import MAX_LIST_BYTES
        retained = session.read_retained(topics.tickets(cfg.venue), RETAINED_WAIT_S, MAX_LIST_BYTES)
    else:
        retained = fetch_retained(cfg.mqtt, topics.tickets(cfg.venue), RETAINED_WAIT_S)
    if retained:
        from gate.boxoffice.keys import keyring, load_public_key
        from gate.core.errors import PayloadError
        keys = keyring([load_public_key(p) for p in cfg.signing.list_keys] + [pub.key.public_key()])
        try:
            header, inner = verify_list(retained, keys)
            if header.venue != cfg.venue:
                raise PayloadError("wrong_venue", header.venue)
        except PayloadError as exc:
            raise GateError(f"the ticket list retained on {topics.tickets(cfg.venue)} is not one this box office "
                            f"can vouch for ({exc.kind}: {exc}); publish one (`gate tickets import --publish`)") from None
        staff = sorted(set(staff) | set(header.staff_revoked))
        payload = pub.repack(inner, staff)
    elif allow_empty:
        payload = pub.pack([], [])
    else:
        raise GateError(f"no ticket list is retained on {topics.tickets(cfg.venue)}, so nothing carried the "
                        "revocation to the gates: publish one (`gate tickets import --publish`, or the house's "
                        "pretix sync: it carries the revocation too), or rerun with --allow-empty to publish a "
                        "list with no tickets but the revocation")
    pub.publish(payload, session=session)
    series, seq = pub.last
    print(f"published list {series}/{seq} with {len(staff)} revoked staff card(s) to {topics.tickets(cfg.venue)}; "
          "gates refuse the card(s) as soon as they apply it (seconds)", flush=True)
    return series, seq


def fetch_retained(m, topic: str, timeout: float):
    """The message retained on `topic` (None when there is none), read with a client of its own."""
    import secrets
    import threading

    from gate.bus.client import connect, explain_refusal, make_client, where
    got: list[bytes] = []
    answer: dict = {}
    done = threading.Event()
    c = make_client(m, f"boxoffice-read-{secrets.token_hex(3)}")

    def on_connect(client, u, f, rc, p):
        answer["rc"] = rc
        if rc.is_failure:
            done.set()
        else:
            client.subscribe(topic, qos=1)

    def on_message(client, u, msg):
        if msg.retain and not got:
            got.append(bytes(msg.payload))
            done.set()
    c.on_connect, c.on_message = on_connect, on_message
    connect(c, m)
    c.loop_start()
    try:
        done.wait(timeout)   # a retained message comes right after the SUBACK; none comes when there is none
    finally:
        c.disconnect()
        c.loop_stop()
    if "rc" in answer and answer["rc"].is_failure:
        raise GateError(f"{where(m)}: {explain_refusal(answer['rc'], m)}")
    if "rc" not in answer:
        raise GateError(f"{where(m)} did not answer within {timeout:g} s")
    return got[0] if got else None
