"""`gate demo`: a whole venue on one machine.

A private Mosquitto on a free port, the house service with its dashboard, and
three simulated gates (two turnstiles with passage sensors, one usher's
handheld) fed rendered camera frames of a synthetic crowd: listed and signed
tickets, members and wheelchair users, plus duplicates, revoked, forged,
unknown and wrong-night tickets, and the odd patron who turns back at the
turnstile. GPIO is gpiozero's MockFactory; the terminal shows each gate's
LED, buzzer and relay as verdicts happen. Ctrl-C stops everything and removes
what the demo made.
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gpiozero.pins.mock import MockFactory, MockPWMPin

log = logging.getLogger(__name__)

FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Margaret", "Tim", "Radia",
         "Sophie", "Dennis", "Hedy", "John", "Katherine", "Linus", "Mary", "Niklaus", "Shafi"]
LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Hamilton",
        "Berners-Lee", "Perlman", "Wilson", "Ritchie", "Lamarr", "Backus", "Johnson", "Torvalds", "Shelley"]
COLOURS = {(0, 1, 0): ("green", 32), (1, 0, 0): ("red", 31), (0, 0, 1): ("blue", 34), (1, 1, 0): ("yellow", 33),
           (1, 0, 1): ("magenta", 35), (0, 1, 1): ("cyan", 36), (1, 1, 1): ("white", 37)}


@dataclass
class Patron:
    code: str
    ticket_id: str
    kind: str            # valid | duplicate | revoked | forged | unknown | wrong_event
    walks: bool = True   # walks through the turnstile once released


def make_crowd(n: int, event: str, key, rng: random.Random):
    """(listed tickets, patrons in arrival order)."""
    from gate.boxoffice.gt1 import sign_ticket
    from gate.core.events import Ticket
    tickets, patrons, valid = [], [], []
    for i in range(n):
        tid = f"D{i:05d}"
        roll = rng.random()
        holder = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        seat = f"{rng.choice('ABCDEFGHJK')}{rng.randint(1, 30)}"
        tags = tuple(t for t, p in (("member", 0.15), ("wheelchair", 0.04), ("birthday", 0.03),
                                    ("first_visit", 0.1)) if rng.random() < p)
        if roll < 0.05:
            tickets.append(Ticket(tid, event, f"HALL-{tid}-{rng.randrange(16**6):06x}", holder, seat, status="revoked"))
            patrons.append(Patron(tickets[-1].code, tid, "revoked"))
        elif roll < 0.08:
            tickets.append(Ticket(tid, "yesterday-eve", f"HALL-{tid}-{rng.randrange(16**6):06x}", holder, seat))
            patrons.append(Patron(tickets[-1].code, tid, "wrong_event"))
        elif roll < 0.11:
            patrons.append(Patron(f"PROMO-{rng.randrange(10**8)}", "", "unknown"))
        elif roll < 0.14:
            code = sign_ticket(key, tid, event)
            i_flip = rng.randrange(len("GT1:"), len(code))
            flipped = code[:i_flip] + ("A" if code[i_flip] != "A" else "B") + code[i_flip + 1:]
            patrons.append(Patron(flipped, tid, "forged"))
        elif roll < 0.35:
            # A signed ticket: the gate verifies it offline; the list adds name and seat.
            code = sign_ticket(key, tid, event)
            tickets.append(Ticket(tid, event, code, holder, seat, tags=tags, patron=f"P{rng.randrange(400)}"))
            patrons.append(Patron(code, tid, "valid", walks=rng.random() > 0.06))
            valid.append(patrons[-1])
        else:
            tickets.append(Ticket(tid, event, f"HALL-{tid}-{rng.randrange(16**6):06x}", holder, seat, tags=tags,
                                  patron=f"P{rng.randrange(400)}"))
            patrons.append(Patron(tickets[-1].code, tid, "valid", walks=rng.random() > 0.06))
            valid.append(patrons[-1])
    # Some friends try the same ticket again later, at whichever door.
    for p in rng.sample(valid, k=max(1, len(valid) // 12)):
        patrons.append(Patron(p.code, p.ticket_id, "duplicate"))
    return tickets, patrons


GATE_TOML = """
[gate]
id = "{id}"
venue = "demo"
profile = "{profile}"
events = ["{event}"]
[camera]
source = "replay:simulated"   # unused: the demo hands each gate its own simulated camera
fps = 10
idle_fps = 4
[decode]
debounce_s = 1.0
[feedback]
led_red = 17
led_green = 27
led_blue = 22
buzzer = 23
{relay}
display = "none"
[turnstile]
passage_pin = 5
passage_timeout_s = 3.0
[handheld]
trigger_pin = 16
linger_s = 0.3
[hospitality.tags.member]
level = "greet"
greeting = "Welcome back, {{first}}!"
[hospitality.tags.birthday]
level = "greet"
greeting = "Happy birthday, {{first}}!"
[hospitality.tags.first_visit]
level = "notice"
greeting = "First visit: welcome!"
[hospitality.tags.wheelchair]
level = "assist"
greeting = "Wheelchair space {{seat}}: please escort."
[mqtt]
host = "127.0.0.1"
port = {port}
keepalive = 5
[storage]
dir = "{dir}"
[signing]
ticket_keys = ["{pub}"]
list_keys = ["{list_pub}"]
venue_secret = "{secret}"
"""


class Terminal:
    """A line per verdict: the gate's LED colour, buzzer and relay, then the words."""

    def __init__(self):
        self.tty = sys.stdout.isatty()
        self.lock = threading.Lock()

    def verdict(self, gate, v, w, e, factory):
        from gate.feedback import PATTERNS
        from gate.verdict_text import remark, who
        step = PATTERNS[v.reason][0]
        name, ansi = COLOURS.get(step.colour, ("off", 90))
        led = f"\033[{ansi}m●\033[0m {name:<7}" if self.tty else f"LED {name:<7}"
        relay = "OPEN " if factory.pin(24).state else "shut "
        line = (f"{time.strftime('%H:%M:%S')} {gate:<9} {led} {'♪' if step.tone else ' '} relay {relay}"
                f"{v.result.upper():<9} {v.reason:<13} {e.ticket[:18]:<18} {who(v):<28} {remark(v, w)}")
        with self.lock:
            print(line, flush=True)


def main(args) -> int:
    from gate.boxoffice.keys import load_private_key, new_keypair, new_secret
    from gate.bus.broker import PrivateBroker
    from gate.camera import SimulatedSource
    from gate.config import parse
    from gate.core.storage import GateFiles
    from gate.house.build import build_house
    from gate.scanner import Scanner
    from gate.state.tickets import TicketStore

    work = Path(tempfile.mkdtemp(prefix="gate-demo-"))
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    broker = house = None
    scanners: list[Scanner] = []
    threads: list[threading.Thread] = []
    rng = random.Random(2026)
    event = time.strftime("%Y-%m-%d") + "-eve"
    try:
        broker = PrivateBroker(work / "broker").start()
        kp, pp = new_keypair(work / "keys", "demo")
        list_key, list_pub = new_keypair(work / "keys", "boxoffice")
        secret = new_secret(work / "keys", "venue")
        key = load_private_key(kp)
        n = args.patrons or 1500
        tickets, patrons = make_crowd(n, event, key, rng)
        by_id = {p.ticket_id: p for p in patrons if p.kind == "valid"}
        crowd = Crowd(patrons, rng, finite=bool(args.patrons))
        finite = bool(args.patrons)

        # The curtain half an hour from now: the dashboard's forecast has something to run against.
        curtain = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() + 1800))
        house_text = (f'[house]\nvenue = "demo"\nlisten = "{args.listen}"\n'
                      f'capacity = {{ "{event}" = {max(100, n)} }}\nclient_id = "house-demo"\n'
                      f'curtain = {{ "{event}" = "{curtain}" }}\n'
                      f'[mqtt]\nhost = "127.0.0.1"\nport = {broker.port}\nkeepalive = 5\n'
                      f'[storage]\ndir = "{work}/house"\n'
                      f'[signing]\nlist_signing_key = "{list_key}"\nvenue_secret = "{secret}"\n')
        house = build_house(parse(house_text, "demo-house"))
        try:
            house.start(settle_heap=True)
        except OSError as exc:
            print(f"gate demo: cannot listen on {args.listen} ({exc.strerror}); try --listen 127.0.0.1:8090",
                  file=sys.stderr)
            return 1
        # As the box office would (gate tickets import --publish): the signed list, retained,
        # for the gates (which also boot with a local copy) and the house's names.
        from gate.boxoffice.publish import ListPublisher
        box = ListPublisher.from_config(house.cfg, role="boxoffice")
        box.publish(box.pack(tickets))
        term = Terminal()
        for gid, profile in (("door-a", "turnstile"), ("door-b", "turnstile"), ("usher-1", "handheld")):
            relay = "relay = 24" if profile == "turnstile" else ""
            cfg = parse(GATE_TOML.format(id=gid, profile=profile, event=event, relay=relay, port=broker.port,
                                         dir=work / gid, pub=pp, list_pub=list_pub, secret=secret),
                        f"demo-{gid}")
            store = TicketStore(GateFiles.of(work / gid).tickets)
            store.replace_all(tickets)
            store.close()
            factory = MockFactory(pin_class=MockPWMPin)
            present = leave = None
            if profile == "handheld":
                trig = factory.pin(16)
                present = lambda code, trig=trig: trig.drive_low()   # the usher presses...
                leave = trig.drive_high                              # ...and lets go
            door = crowd.door(gid, profile)
            src = SimulatedSource(door.next_code, fps=10, seed=len(scanners), on_present=present, on_leave=leave)

            def on_verdict(v, w, e, gid=gid, factory=factory, profile=profile, door=door):
                door.answered = True
                term.verdict(gid, v, w, e, factory)
                p = by_id.get(e.ticket)
                if profile == "turnstile" and v.admitted and p is not None and p.walks:
                    threading.Timer(0.6, _walk_through, (factory.pin(5),)).start()
            s = Scanner(cfg, src, pin_factory=factory, on_verdict=on_verdict, verifiers=None)
            if profile == "handheld":
                factory.pin(16).drive_high()  # trigger released at start
            scanners.append(s)
        for s in scanners:
            t = threading.Thread(target=s.run, name=f"gate-{s.gate.id}", daemon=True)
            t.start()
            threads.append(t)
        url = f"http://{args.listen}/"
        print(f"\ngate demo: dashboard at {url}   (broker on 127.0.0.1:{broker.port}; Ctrl-C to stop)\n", flush=True)
        started = time.monotonic()
        while not stop.wait(0.5):
            if args.duration and time.monotonic() - started > args.duration:
                break
            if finite and all(not t.is_alive() for t in threads):
                break
        for s in scanners:
            s.stop.set()
        for t in threads:
            t.join(10)
        if finite:
            return _summary(crowd, house, event, scanners, work)
        return 0
    finally:
        for s in scanners:
            s.stop.set()
        if house is not None:
            house.close()
            _report(house.cfg, event)
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def _report(cfg, event: str) -> None:
    """The night's house report (gate/house/report.py), kept after the demo's files are gone."""
    from gate.house.report import night_report
    from gate.house.reportpage import page
    path = Path(tempfile.gettempdir()) / f"gate-house-report-{event}.html"
    try:
        path.write_text(page(night_report(cfg, event)), encoding="utf-8")
    except Exception as exc:   # the demo is over either way: say why there is no report
        print(f"gate demo: no house report ({exc})", file=sys.stderr, flush=True)
        return
    print(f"\ngate demo: the night's house report is {path}", flush=True)


def _walk_through(pin):
    pin.drive_high()
    time.sleep(0.15)
    pin.drive_low()


class Crowd:
    """Hands patrons to doors; a patron whose ticket got no beep shows it again."""

    def __init__(self, patrons, rng, finite):
        self.patrons, self.rng, self.finite = patrons, rng, finite
        self._it = iter(patrons)
        self.lock = threading.Lock()
        self.presented: list[tuple[str, Patron]] = []   # (door profile, patron)

    def door(self, gid, profile):
        crowd = self

        class Door:
            current, tries, answered, waited = None, 0, True, False

            def next_code(self):
                if self.current is not None and not self.answered and self.tries < 4:
                    if not self.waited:   # the verdict may still be on its way
                        self.waited = True
                        return None
                    self.tries, self.waited = self.tries + 1, False
                    return self.current.code
                with crowd.lock:
                    if crowd.rng.random() < 0.25:
                        self.current = None
                        return None  # a quiet moment at this door
                    p = next(crowd._it, None)
                    if p is not None:
                        crowd.presented.append((profile, p))
                self.current, self.tries, self.answered, self.waited = p, 1, False, False
                if p is None:
                    if crowd.finite:
                        raise StopIteration
                    return None
                return p.code
        return Door()

    def expected(self) -> set:
        """Valid tickets whose admission stands: walked through a turnstile, or scanned by an usher."""
        by_id = {p.ticket_id: p for p in self.patrons if p.kind == "valid"}
        out = set()
        for profile, p in self.presented:
            v = by_id.get(p.ticket_id)
            if v is not None and (profile == "handheld" or v.walks):
                out.add(p.ticket_id)
        return out


def _summary(crowd, house, event, scanners, work) -> int:
    """Finite runs: does the house count equal the admissible tickets that came in?"""
    from gate.core.storage import GateFiles
    from gate.state.outbox import Outbox
    end = time.monotonic() + 15
    while time.monotonic() < end:
        if sum(Outbox(GateFiles.of(work / s.gate.id).outbox).depth() for s in scanners) == 0:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    ev: dict = next((e for e in house.api()["events"] if e["event"] == event), {})
    admitted = {r["ticket"] for r in house.attendance()}
    expected = crowd.expected()
    missing, unexpected = sorted(expected - admitted), sorted(admitted - expected)
    summary = {"patrons": len(crowd.patrons), "expected_admitted": len(expected),
               "house_admitted": ev.get("admitted"), "house_inside": ev.get("inside"),
               "annulled": ev.get("annulled"), "rejected": ev.get("rejected_by_reason"),
               "conflicts": len(ev.get("conflicts", [])),
               "missing": missing, "unexpected": unexpected}
    print(json.dumps(summary), flush=True)
    if missing or unexpected:
        for profile, p in crowd.presented:
            if p.ticket_id in set(missing) | set(unexpected):
                print(f"  presented at a {profile}: {p.ticket_id} {p.kind} walks={p.walks}", flush=True)
    return 0 if ev.get("admitted") == len(expected) and admitted == expected else 1
