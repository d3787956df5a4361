"""Small overrides of the default scenario shared by several tests."""

#: A 2-h, 41 x 41 primary tumour with vessel points all around it, so that cells
#: intravasate within the run; snapshots every hour, time-series rows every 0.5 h.
SHEDDING_2D = {
    "duration_h": 2.0,
    "primary.lattice.shape": [41, 41],
    "primary.initial_tumour.cells": 50,
    "primary.vessels.normal": 300,
    "primary.vessels.ruptured": 100,
    "primary.vessels.min_distance_um": 0.0,
    "output.snapshot_every_h": 1.0,
    "output.record_every_h": 0.5,
}

#: The class action for 120 h with six snapshots, and 100 cells of the metastatic clone injected into
#: the venous route at 1 h: a short run with metastases in lung and liver whatever the random draws
#: (32 with the scenario's seed; the primary tumour alone founds 1 to 4), for reports and exports
#: (about 7 s).
SHORT_CLASSACTION = {"duration_h": 120.0, "output.snapshot_every_h": 24.0,
                     "injections": [{"vessel": "venous", "time_h": 1.0, "cells": 100}]}
