"""Engine core: geometry, state, fields, random streams, schedule, driver."""
