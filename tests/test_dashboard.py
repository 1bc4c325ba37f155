"""The house dashboard in a real headless Chromium (Debian's package, driven by
Playwright) against a real house service fed through Mosquitto."""

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from gate.bus.codec import pack_scan
from gate.house.build import build_house
from tests.conftest import REPO, gate_config, house_config, publish_raw, scan_event, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


@pytest.fixture
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


def text(page, sel):
    return page.locator(sel).first.inner_text(timeout=2000)


def test_dashboard_live_counts_offline_gate_and_house_restart(tmp_path, broker, browser):
    cfg = house_config(tmp_path, broker.port)
    house = build_house(cfg)
    house.start()
    wait_for(house.connected.is_set)
    page = browser.new_page(viewport={"width": 390, "height": 844})   # a phone, portrait
    page.goto(f"http://{cfg.house.listen}/")
    wait_for(lambda: text(page, "#conn") == "live", what="page connected")
    # Before any scan: tonight's performance (it has a capacity) has its card, every number zero.
    # (Read from the rendered card: the page's own script holds every word it can show.)
    card = '[data-event="eve"]'
    wait_for(lambda: page.locator(card).count() == 1, 5, what="the eve card rendered")
    assert text(page, f"{card} h2") == "eve"
    assert [text(page, f'{card} [data-k="{k}"]') for k in ("inside", "admitted", "exited", "rejected")] == ["0"] * 4
    assert page.locator(f"{card} .gauge svg text").all_text_contents()[-1] == "0% of 100"
    assert page.locator("p.empty").count() == 0

    # A scan shows on the page within a second.
    publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event("P1", attention=["member"]))])
    t0 = time.monotonic()
    wait_for(lambda: page.locator('[data-event="eve"] [data-k="admitted"]').count()
             and text(page, '[data-event="eve"] [data-k="admitted"]') == "1", 3, 0.02, what="admitted 1 on screen")
    assert time.monotonic() - t0 < 1.0
    publish_raw(broker.port, "gate/hall/door-b/scan", [pack_scan(scan_event("P2", gate="door-b"))], "b")
    wait_for(lambda: text(page, '[data-event="eve"] [data-k="inside"]') == "2", 3, what="inside 2")
    assert "member" in text(page, "#arrivals")

    # A gate that dies without saying goodbye shows offline within its keepalive (the broker's last will).
    gcfg = gate_config(tmp_path, gate="door-x", port=broker.port, mqtt_on=True)
    env = dict(os.environ, PYTHONPATH=str(REPO))
    gate = subprocess.Popen([sys.executable, "-m", "tests.gate_burst", gcfg.path, "0", "1", "0", "hold"],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        wait_for(lambda: page.locator('tr[data-gate="door-x"].online').count() == 1, 10, what="door-x online")
        wait_for(lambda: text(page, '[data-event="eve"] [data-k="admitted"]') == "3", 10, what="door-x's admission")
    finally:
        gate.send_signal(signal.SIGKILL)   # dies without saying goodbye (and never outlives the test)
        gate.wait()
    t0 = time.monotonic()
    wait_for(lambda: page.locator('tr[data-gate="door-x"].offline').count() == 1, 15, what="door-x offline")
    assert time.monotonic() - t0 <= gcfg.mqtt.keepalive * 1.5 + 2

    # The house restarts: the page reconnects by itself and shows the same numbers.
    before = next(e for e in house.api()["events"] if e["event"] == "eve")["admitted"]
    assert before == 3  # P1, P2 and door-x's one admission
    house.close()
    wait_for(lambda: text(page, "#conn") != "live", 10, what="page notices the house is gone")
    house = build_house(cfg)
    house.start()
    try:
        wait_for(lambda: text(page, "#conn") == "live", 15, what="page reconnected")
        wait_for(lambda: text(page, '[data-event="eve"] [data-k="admitted"]') == str(before), 5, what="counts after restart")
        publish_raw(broker.port, "gate/hall/door-a/scan", [pack_scan(scan_event("P3"))], "c")
        wait_for(lambda: text(page, '[data-event="eve"] [data-k="admitted"]') == str(before + 1), 3, what="live after restart")
        big = browser.new_page(viewport={"width": 1600, "height": 900})   # the box office screen
        big.goto(f"http://{cfg.house.listen}/")
        wait_for(lambda: big.locator('[data-event="eve"] [data-k="admitted"]').count() == 1, 5)
        if os.environ.get("GATE_SCREENSHOT"):
            big.screenshot(path=os.environ["GATE_SCREENSHOT"], full_page=True)
    finally:
        house.close()


def test_dashboard_token_required_when_configured(tmp_path, broker):
    import urllib.error
    import urllib.request
    (tmp_path / "token").write_text("s3cret\n")
    cfg = house_config(tmp_path, broker.port)
    cfg.house.token_file = str(tmp_path / "token")
    house = build_house(cfg)
    house.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://{cfg.house.listen}/api/house")
        assert e.value.code == 401
        with urllib.request.urlopen(f"http://{cfg.house.listen}/api/house?token=s3cret") as r:
            assert r.status == 200
        page = urllib.request.urlopen(f"http://{cfg.house.listen}/?token=s3cret").read().decode()
        assert "http://" not in page.replace("http://{", "") and "https://" not in page  # nothing from a CDN
    finally:
        house.close()


def test_dashboard_shows_implausible_claims_set_aside_doors_and_the_capacity_alarm(tmp_path, broker, browser):
    from tests.conftest import run_gate_cli
    cfg = house_config(tmp_path, broker.port)   # eve's capacity is 100
    house = build_house(cfg)
    house.start()
    try:
        wait_for(house.connected.is_set)
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(f"http://{cfg.house.listen}/")
        wait_for(lambda: text(page, "#conn") == "live", what="page connected")
        assert not page.locator("#alarms").is_visible()
        now = int(time.time() * 1000)
        # door-x claims 300 admissions stamped in the same second: more than a lane passes.
        publish_raw(broker.port, "gate/hall/door-x/scan",
                     [pack_scan(scan_event(f"X{i}", gate="door-x", ts=now)) for i in range(300)], "x")
        wait_for(lambda: page.locator('tr[data-gate="door-x"] [data-k="implausible"]').count() == 1
                 and "180 implausible" in text(page, 'tr[data-gate="door-x"]'), 10, what="door-x flagged on the page")
        assert "180 beyond what a lane can pass" in text(page, '[data-event="eve"] [data-k="not-counted"]')
        wait_for(lambda: "door-x claims more admissions" in text(page, "#alarms"), 5, what="the security alarm")
        assert text(page, '[data-event="eve"] [data-k="over"]') == "OVER CAPACITY"   # 120 inside, capacity 100
        assert "more than its capacity of 100" in text(page, "#alarms")
        r = run_gate_cli("house", "-c", cfg.path, "set-aside", "door-x", "--since", "00:00")
        assert r.returncode == 0, r.stderr
        wait_for(lambda: page.locator('tr[data-gate="door-x"] [data-k="set-aside"]').count() == 1, 10,
                 what="door-x set aside on the page")
        wait_for(lambda: text(page, '[data-event="eve"] [data-k="inside"]') == "0", 5, what="recounted without door-x")
        assert page.locator('[data-event="eve"] [data-k="over"]').count() == 0
        if os.environ.get("GATE_SCREENSHOT"):
            page.screenshot(path=os.environ["GATE_SCREENSHOT"], full_page=True)
    finally:
        house.close()
