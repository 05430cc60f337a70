"""`retention simulate`'s machinery, the project's one event generator: its options
(`config`) and named presets (`presets`), the generator (`generator`), the order events
are sent in (`delivery`), the ground truth written beside them (`truth`), and writing
and sending (`run`)."""
