"""The demo and the renderers: a whole venue on one machine, rendered barcodes and camera scenes."""
