"""The house's composition root: one place reads the house's config and builds every part.

Each `init_*` builds one part from config and hands it only what it needs, as the gate's
gate/build.py does: the pretix link gets `mark_dirty`, a publish function and the inbox, not
the house; the dashboard gets a snapshot function and its token; the state is shared only
through its own locked methods. A build that fails part-way closes what it already opened.
`HouseParts.start()` starts the threads, `close()` stops them in order.

    parts = build_house(cfg)
    parts.start()
    ...
    parts.close()
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

from gate.boxoffice.keys import load_public_key
from gate.boxoffice.staff import StaffVerifier
from gate.bus.client import read_secret
from gate.config import house as house_config
from gate.core.errors import ConfigError, GateError
from gate.core.storage import HouseFiles
from gate.core.supervisor import Workers
from gate.core.teardown import close_in_order
from gate.house import uploads
from gate.house.alerts import Alerts
from gate.house.checkout import CheckOut
from gate.house.curtain import Curtains
from gate.house.dooralerts import DoorAlerts
from gate.house.flow import DoorFlow
from gate.house.ingest import Ingest
from gate.house.intake import Intake
from gate.house.lists import HouseLists
from gate.house.log import AttendanceLog
from gate.house.mqtt import HouseMqtt
from gate.house.publisher import Publisher
from gate.house.query import HouseQuery
from gate.house.roster import Roster
from gate.house.standby import Standby
from gate.house.state import HouseState
from gate.house.venuemode import VenueMode
from gate.house.watch import Watch
from gate.house.web import Dashboard
from gate.house.word import GateWord

log = logging.getLogger(__name__)


@dataclass
class HouseParts:
    """Everything the house is made of, built; `start()` runs it, `close()` undoes the build."""
    cfg: Any
    log: Optional[AttendanceLog] = None
    state: Optional[HouseState] = None
    checkout: Optional[CheckOut] = None
    query: Optional[HouseQuery] = None
    venue_mode: Optional[VenueMode] = None
    lists: Optional[HouseLists] = None
    bus: Optional[HouseMqtt] = None
    publisher: Optional[Publisher] = None
    intake: Optional[Intake] = None
    pretix: Any = None               # PretixLink, when [pretix] url is set
    standby: Optional[Standby] = None   # the election: which house publishes
    web: Optional[Dashboard] = None
    alerts: Optional[Alerts] = None      # pretix-safe: the alerts topic (gate/house/alerts.py)
    workers: Optional[Workers] = None    # pretix-safe: the supervised workers, for /api/house
    doors: Optional[DoorAlerts] = None   # door-flow: each door as the alerts see it (gate/house/dooralerts.py)
    watch: Optional[Watch] = None        # door-flow: the rules, arrivals, alerts/active (gate/house/watch.py)
    _closed: bool = False

    @property
    def connected(self):
        """Set while the house is connected to the broker (a threading.Event)."""
        if self.bus is None:
            raise RuntimeError("this house was built for reading only (build_house(cfg, serve=False))")
        return self.bus.connected

    def api(self) -> dict:
        """The `/api/house` object."""
        if self.query is None:
            raise RuntimeError("the house was not built")
        return self.query.api()

    def attendance(self) -> list[dict]:
        """The attendance log for the box office's CRM (gate/house/attendance.py)."""
        if self.query is None:
            raise RuntimeError("the house was not built")
        return self.query.attendance()

    def start(self, *, settle_heap: bool = False) -> None:
        """Connect, start the workers, listen; raises OSError when the dashboard cannot listen.
        `settle_heap`: this process is this house (gate/house/watch.py `settle_heap`)."""
        bus, intake, publisher, web = self.bus, self.intake, self.publisher, self.web
        if bus is None or intake is None or publisher is None or web is None:
            raise RuntimeError("this house was built for reading only (build_house(cfg, serve=False))")
        if settle_heap and self.watch is not None:
            self.watch.settle_heap()   # what the log gave, out of the collector's way before anything runs
            intake.settle = self.watch.settle_heap   # and every few thousand events counted
        bus.start()
        if self.standby is not None:
            self.standby.start()
        intake.start()
        publisher.start()
        if self.watch is not None:
            self.watch.settle = settle_heap
            self.watch.start()
        if self.pretix is not None:
            self.pretix.start()
        web.start()

    def close(self) -> None:
        """The dashboard first, then the workers, a clean `offline`, the broker, the log; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        # The election first: a house that says `offline` must not hear it and say `online` again.
        steps = [("standby", lambda p: p.stop()),
                 ("web", lambda p: p.close()), ("intake", lambda p: p.stop()), ("watch", lambda p: p.stop()),
                 ("publisher", lambda p: p.stop()),
                 ("bus", lambda p: p.say_offline()), ("pretix", lambda p: p.close()), ("bus", lambda p: p.close()),
                 ("log", lambda p: p.close())]
        close_in_order(self, steps, log, "closing the house's %s")


def init_log(cfg) -> AttendanceLog:
    attendance = AttendanceLog(HouseFiles.of(cfg.storage.dir).log)
    if cfg.pretix.url:
        try:
            # Queued for pretix in the transaction that logs the scan: never one without the other.
            attendance.db.executescript(uploads.SCHEMA)
            attendance.on_store = uploads.enqueue
        except BaseException:
            attendance.close()
            raise
    return attendance


def init_state(cfg, attendance: AttendanceLog, checkout: CheckOut, mode: str = "live",
               alerts: Optional[Alerts] = None) -> HouseState:
    """The counts and the door flow rebuilt from the attendance log; `mode` is the venue's as last applied;
    `alerts` the house's alerts publisher (capacity and security alarms go out there too)."""
    flow = DoorFlow(Curtains(cfg.house.curtain), cfg.house.assist_tags)
    flow.set_roster(Roster.read(attendance.db))
    state = HouseState(cfg.house.capacity, mode, GateWord(attendance, cfg.house.capacity, alerts=alerts), flow)
    stored = list(attendance.events())   # held only while starting: the counts keep most of them anyway
    flow.quiet = True                    # history, not news: no arrival alerts for what the log holds
    n = state.restore(stored, attendance.holders())
    flow.quiet = False
    for e in stored:
        checkout.note(e)   # an entry from before the last check-out, stored after it, is checked out at the next look
    if n:
        log.info("restored %d scan events from the attendance log", n)
    return state


def init_token(cfg) -> str:
    """The dashboard's token ("" = none asked for)."""
    if not cfg.house.token_file:
        return ""
    token = read_secret(cfg.house.token_file, "GATE_DASHBOARD_TOKEN")
    if not token:
        # An empty token would mean no token at all: refuse rather than open the dashboard.
        raise GateError(f"house.token_file: {cfg.house.token_file} is empty; refusing to serve the "
                        "dashboard without its token")
    return token


def init_bus(cfg, state: HouseState) -> HouseMqtt:
    # A standby connects without the last will on the house status and gets it when it wins the election
    # (gate/house/standby.py), so its death never says `offline` for the house that is publishing. A first
    # house connects with it: it is the active house at nearly every start, and connecting again once it
    # has won would hand the broker back everything delivered and not yet stored (a restart after an
    # outage is exactly when that is a backlog). If it finds a standby holding the job it connects again
    # without; should it die before that, the active house answers the stray `offline` with `online`.
    return HouseMqtt(cfg.mqtt, cfg.house.venue, house_config.client_id(cfg), state.drops,
                     will=not cfg.house.standby)


def init_standby(cfg, state: HouseState, bus: HouseMqtt, publisher: Publisher, pretix) -> Standby:
    """The election (gate/house/standby.py): this house publishes only while it is the active one."""
    def on_active() -> None:
        bus.say_online()
        publisher.online(settle_s=0)   # Home Assistant's entities now: a standby's announcements went nowhere
        for g in state.view()["gates"]:   # and the doors heard from so far (their statuses came before)
            if g["state"] != "unknown":
                publisher.announce_gate(g["gate"])
        for ev in state.known_events():   # every count, as this house has it (a standby's were held back)
            state.mark_dirty(ev)
        state.doors.unpublished()          # and each door's problems
        if pretix is not None:
            pretix.activated()

    standby = Standby(cfg.house.venue, house_config.house_id(cfg), not cfg.house.standby, bus, state.drops,
                      on_active=on_active, on_change=state.mark_dirty)
    if pretix is not None:
        pretix.active, pretix.standing_by = standby.active, standby.standing_by
    return standby


def init_pretix(cfg, state: HouseState, bus: HouseMqtt, alerts: Optional[Alerts] = None):
    """The link to pretix, when `[pretix] url` is set (gate/house/pretix_link.py)."""
    if not cfg.pretix.url:
        return None
    from gate.house.pretix_link import PretixLink
    try:
        return PretixLink(cfg, mark_dirty=state.mark_dirty, publish=bus.publish, inject=bus.inject, alerts=alerts)
    except (OSError, ValueError) as exc:
        raise ConfigError(cfg.path, "pretix.token_file", 0, str(exc)) from None


def init_intake(cfg, state: HouseState, attendance: AttendanceLog, bus: HouseMqtt, checkout: CheckOut,
                lists: HouseLists, venue_mode: VenueMode, publisher: Publisher, pretix, doors: DoorAlerts) -> Intake:
    """The intake and what it hands messages on to: ticket lists, the venue's mode, gate reports."""
    def on_tickets(payload: bytes) -> None:
        if not payload:
            return
        tickets = lists.read(payload)   # None: not a newer list signed by a key we trust (counted)
        if tickets is None:
            return
        holders = attendance.replace_holders(tickets)
        state.set_holders(holders)
        state.flow.set_roster(Roster.write(attendance.db, tickets))   # who is expected (gate/house/roster.py)
        log.info("holder directory updated: %d tickets", len(holders))

    def on_control(payload: bytes) -> None:
        """The venue's mode (gate/house/venuemode.py), verified there; going live clears the rehearsal counts."""
        mode = venue_mode.apply(payload)
        if mode is not None:
            state.set_mode(mode)
            if bus.connected.is_set():
                bus.say_online()   # the house's status says the mode it applied: `gate venue` waits for it
        state.mark_dirty()

    def on_report(gate: str, kind: str, obj: dict) -> None:
        doors.heard(gate, kind, obj)   # the alerts' view of the door (gate/house/dooralerts.py)
        if state.gate_report(gate, kind, obj):
            publisher.announce_gate(gate)

    ingest = Ingest(cfg.house.venue, state, attendance, on_tickets=on_tickets, on_control=on_control,
                    on_report=on_report)
    return Intake(state, ingest, attendance, bus, checkout, on_admitted=publisher.admitted,
                  on_stored=pretix.wake if pretix is not None else None)


def init_watch(cfg, state: HouseState, alerts: Alerts, doors: DoorAlerts, bus: HouseMqtt, publisher: Publisher, pretix,
               attendance: AttendanceLog) -> Watch:
    """The worker that turns the house's figures into alerts (gate/house/watch.py); it publishes only while
    this house is the active one (`bus.publishing`, gate/house/standby.py)."""
    h = cfg.house
    return Watch(h.venue, state, state.flow, doors, alerts, publish=bus.publish, connected=bus.connected,
                 publishing=lambda: bus.publishing(), publisher=publisher, pretix=pretix, db_path=attendance.path,
                 roster=h.roster, forget_gate_after_h=h.forget_gate_after_h)


def build_house(cfg, *, serve: bool = True) -> HouseParts:
    """Build every part of the house that `cfg` describes. `serve=False`: only the attendance
    log and the counts rebuilt from it (for an export beside a running house)."""
    parts = HouseParts(cfg)
    try:
        parts.log = attendance = init_log(cfg)
        parts.checkout = checkout = CheckOut(attendance.db, cfg.house.checkout)
        if not serve:
            parts.state = state = init_state(cfg, attendance, checkout)
            parts.query = HouseQuery(cfg.house.venue, state, attendance)
            return parts
        token = init_token(cfg)
        parts.venue_mode = venue_mode = VenueMode(
            attendance.db, StaffVerifier([load_public_key(p) for p in cfg.signing.staff_keys], cfg.venue))
        # pretix-safe: one alerts publisher for the house (gate/house/alerts.py), its publish function handed
        # in once the bus and the election exist (alerts raised before that stand in `active`). No
        # alerts.on_change = state.mark_dirty: the word raises alarms under the state's lock.
        parts.alerts = alerts = Alerts(cfg.house.venue)
        parts.state = state = init_state(cfg, attendance, checkout, venue_mode.mode, alerts)
        parts.lists = lists = HouseLists(cfg)
        parts.bus = bus = init_bus(cfg, state)
        parts.pretix = pretix = init_pretix(cfg, state, bus, alerts)
        parts.publisher = publisher = Publisher(cfg.house.venue, state, bus.publish, bus.connected)
        parts.doors = doors = DoorAlerts()
        parts.intake = init_intake(cfg, state, attendance, bus, checkout, lists, venue_mode, publisher,
                                   pretix, doors)
        parts.standby = standby = init_standby(cfg, state, bus, publisher, pretix)

        def publish_alert(topic: str, payload, retain: bool = False) -> None:
            """Only the active house publishes its alerts; a standby keeps them (its own dashboard)."""
            if standby.active():
                bus.publish(topic, payload, retain)
        alerts.publish = publish_alert
        parts.watch = watch = init_watch(cfg, state, alerts, doors, bus, publisher, pretix, attendance)
        parts.workers = workers = Workers()   # pretix-safe: filled in below, once every worker is built
        parts.query = query = HouseQuery(cfg.house.venue, state, attendance, ticket_lists=lists.report,
                                         pretix=pretix.status if pretix is not None else None,
                                         houses=standby.view, workers=workers.report, alerts=alerts.report)
        parts.web = web = Dashboard(query.api, cfg.house.listen, token)
        workers.add(parts.intake, parts.publisher, watch, web, *(pretix.workers if pretix is not None else ()))
        # The callbacks that close the circle: paho's thread tells the publisher, the publisher the dashboards.
        def on_online() -> None:
            standby.connected()   # first: nothing is published before the claim is read again
            publisher.online()
        bus.on_online = on_online
        bus.on_ha_config = publisher.config_seen
        bus.status_extra = venue_mode.status
        publisher.on_published = web.notify
    except BaseException:
        parts.close()
        raise
    return parts
