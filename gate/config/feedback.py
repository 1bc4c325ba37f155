"""[feedback]: the RGB LED, buzzer, relay and display; and every GPIO pin the gate's profile uses."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from gate.config.rules import Fail, check_pins, choice, pin


@dataclass
class FeedbackSection:
    led_red: Optional[int] = pin()   # BCM pin numbers; None = not fitted
    led_green: Optional[int] = pin()
    led_blue: Optional[int] = pin()
    buzzer: Optional[int] = pin()
    tonal_buzzer: bool = False       # a TonalBuzzer on a PWM pin instead of an active buzzer
    relay: Optional[int] = pin()     # turnstile release
    relay_active_high: bool = True
    display: str = choice("none", "console", "ssd1306", "sh1106")


def check(cfg, fail: Fail) -> None:
    """The RGB LED is fitted whole; every pin the profile opens exists and is used once."""
    if cfg.gate is None:
        return
    fb = cfg.feedback
    leds = {"feedback.led_red": fb.led_red, "feedback.led_green": fb.led_green, "feedback.led_blue": fb.led_blue}
    fitted = [k for k, v in leds.items() if v is not None]
    if fitted and len(fitted) != 3:
        missing = [k for k, v in leds.items() if v is None]
        fail(fitted[0], f"the LED is an RGB LED: led_red, led_green and led_blue are fitted together "
                        f"(missing {', '.join(k.split('.')[1] for k in missing)})")
    # The pins of the profile's own section count; the other profile's are never opened.
    door = ("turnstile", cfg.turnstile) if cfg.gate.profile == "turnstile" else ("handheld", cfg.handheld)
    check_pins(fail, [("feedback", fb), door])
