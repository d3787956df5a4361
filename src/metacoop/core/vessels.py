"""Vessel point codes of a lattice site's ``vessel`` map."""

NO_VESSEL, NORMAL_VESSEL, RUPTURED_VESSEL, LYMPHATIC_VESSEL = 0, 1, 2, 3
VESSEL_NAMES = {NORMAL_VESSEL: "normal", RUPTURED_VESSEL: "ruptured", LYMPHATIC_VESSEL: "lymphatic"}
