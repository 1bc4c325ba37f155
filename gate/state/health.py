"""Figures a gate reports about itself (health topic, `gate doctor`)."""

from __future__ import annotations

from typing import Optional


def percentile(values, q: float) -> float:
    """The q-quantile (0..1) of `values` by nearest rank; 0 for none."""
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * (len(s) - 1) + 0.5))]


def cpu_temperature() -> Optional[float]:
    """The SoC temperature in °C, where the kernel reports one."""
    try:
        with open("/sys/class/thermal/thermal_zone0/temp") as f:
            return int(f.read()) / 1000
    except (OSError, ValueError):
        return None
