"""Where codes come from: the Pi camera, USB/serial barcode scanners, the capture thread."""
