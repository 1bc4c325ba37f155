"""Reading codes in frames: decode engines, the region tracker, 1-D reading, dewarping."""
