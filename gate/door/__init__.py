"""The door's hardware: turnstile relay and passage sensors, trigger, display, recording mock pins."""
