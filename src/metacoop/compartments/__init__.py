"""Compartments: lattice sites (primary tumour, later organs) and the circulation."""
