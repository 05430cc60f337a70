"""`retention simulate`'s machinery: the event generator (`generator`), its presets,
the ground truth written beside the events (`truth`), and writing and sending (`run`)."""
