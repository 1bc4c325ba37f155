"""The dashboard for a person in the foyer, in a real headless Chromium (Debian's package, driven by
Playwright) at phone and box-office sizes, against a real house fed through Mosquitto: the arrival
curve per door with the forecast and the curtain, the lanes, the still-to-come figure, alerts ranked."""

from __future__ import annotations

import json
import os
import time

import pytest

from gate.bus.codec import pack_scan
from gate.core.events import Ticket
from gate.house.build import build_house
from tests.conftest import publish_raw as _publish_raw
from tests.conftest import scan_event, wait_for
from tests.test_dashboard import CHROMIUM, FLAGS
from tests.test_house_alerts_live import house_cfg

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def painted(page, colour: str) -> int:
    """Pixels of the chart's canvas in `colour` (#rrggbb): the series was drawn, not only declared."""
    return page.evaluate("""(hex) => {
      const u = window.flowCharts["eve"], c = u.ctx, w = c.canvas.width, h = c.canvas.height;
      const d = c.getImageData(0, 0, w, h).data, r = parseInt(hex.slice(1, 3), 16), g = parseInt(hex.slice(3, 5), 16),
            b = parseInt(hex.slice(5, 7), 16);
      let n = 0;
      for (let i = 0; i < d.length; i += 4)
        if (Math.abs(d[i] - r) < 24 && Math.abs(d[i + 1] - g) < 24 && Math.abs(d[i + 2] - b) < 24 && d[i + 3] > 200) n++;
      return n; }""", colour)


def test_dashboard_flow_curve_lanes_and_alerts_at_phone_and_desktop_sizes(tmp_path, broker, browser, venue_keys):
    cfg = house_cfg(tmp_path, broker.port, venue_keys)
    cfg.house.capacity["eve"] = 40
    # The curtain half an hour from now (local time, as a venue writes it).
    cfg.house.curtain["eve"] = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() + 1800))
    house = build_house(cfg)
    house.start()
    try:
        wait_for(house.connected.is_set, what="house connected")
        tickets = [Ticket(f"T{i}", "eve", f"CODE-{i}", f"Guest {i}", f"B{i}") for i in range(120)]
        _publish_raw(broker.port, "gate/hall/tickets", [venue_keys.pack(tickets, seq=1)], "boxoffice")
        wait_for(lambda: house.api()["events"][0]["flow"]["sold"] == 120, what="list applied")
        now = int(time.time() * 1000)
        # Ten minutes of arrivals: door-a three a minute, door-b one a minute; Guest 0 needs a wheelchair space.
        a = [scan_event(f"T{i}", "door-a", ts=now - 600_000 + i * 20_000, attention=["wheelchair"] if i == 29 else [])
             for i in range(30)]
        b = [scan_event(f"T{100 + i}", "door-b", ts=now - 600_000 + i * 60_000) for i in range(10)]
        _publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(e) for e in a], "door-a")
        _publish_raw(broker.port, "gate/hall/door-b/scan", [pack_scan(e) for e in b], "door-b")
        wait_for(lambda: house.api()["events"][0]["flow"]["in"] == 40, what="forty in")
        f = house.api()["events"][0]["flow"]
        for size in ({"width": 390, "height": 844}, {"width": 1600, "height": 900}):   # a phone; the box office
            check_page(browser, f"http://{cfg.house.listen}/", size, f,
                       lambda: house.api()["events"][0]["flow"]["doors"]["door-a"]["rate"])
        assert json.dumps(f)   # the figures the page drew are the API's own
    finally:
        house.close()


def check_page(browser, url: str, size: dict, f: dict, door_a_rate_now) -> None:
    """The page at one size draws what the house's `flow` says (`f`, read before the page was opened;
    `door_a_rate_now()`: door-a's rate as the house says it now)."""
    page = browser.new_page(viewport=size)
    page.goto(url)
    wait_for(lambda: page.evaluate("!!(window.flowCharts && window.flowCharts.eve)"), 10, what="chart drawn")
    labels = page.evaluate("window.flowCharts.eve.series.slice(1).map(s => s.label)")
    assert labels == ["all doors", "door-a", "door-b", "forecast"]
    data = page.evaluate("window.flowCharts.eve.data")
    total = [v for v in data[1] if v is not None]
    assert total[-1] == 40 and data[2][len(total) - 1] == 30 and data[3][len(total) - 1] == 10
    forecast = [(x, v) for x, v in zip(data[0], data[4]) if v is not None]
    assert forecast == [(pytest.approx(f["curve"]["forecast"][0][0] / 1000), 40),
                        (pytest.approx(f["forecast"] / 1000), 120)]
    assert f["curtain"] / 1000 in data[0]                                  # the x axis reaches the curtain
    width = page.evaluate("window.flowCharts.eve.width")
    assert size["width"] * 0.4 < width <= size["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= size["width"]   # nothing off the side
    assert painted(page, "#4aa3ff") > 50 and painted(page, "#3ecf6e") > 50   # door-a, door-b lines
    assert painted(page, "#f0b429") > 20 and painted(page, "#ef5350") > 20   # forecast, curtain
    assert page.locator('[data-event="eve"] [data-k="still"]').first.inner_text() == "80"
    verdict = page.locator('[data-k="verdict"]').first.inner_text()
    assert "all in by about" in verdict and ("before the curtain" in verdict or "past the curtain" in verdict)
    rate = page.locator('.flow tr[data-door="door-a"] [data-k="rate"]').inner_text()
    # The rate is over the last minutes up to now and nobody arrives meanwhile: it can only fall between the
    # house's answer before the page was drawn and its answer after, and the page shows one in that range.
    assert rate.endswith("/min"), rate
    assert door_a_rate_now() <= float(rate[:-len("/min")]) <= f["doors"]["door-a"]["rate"], rate
    # Alerts, the most serious first: eve is full (critical), then the wheelchair user (warn).
    wait_for(lambda: page.locator("#alarm-list li").count() >= 2, 5, what="alerts shown")
    levels = page.evaluate("[...document.querySelectorAll('#alarm-list li')].map(li => li.dataset.level)")
    assert levels == sorted(levels, key=["critical", "warn", "info"].index) and levels[0] == "critical"
    assert "Assist Guest 29 (wheelchair) at door-a, seat B29." in page.locator("#alarm-list").inner_text()
    page.close()
