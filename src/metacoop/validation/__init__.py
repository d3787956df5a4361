"""Validation against published experiments: targets, named observables, tolerance rules, ``validate``.

See :mod:`metacoop.validation.targets` for the targets file,
:mod:`metacoop.validation.observables` for what is measured,
:mod:`metacoop.validation.rules` for how it is judged and
:mod:`metacoop.validation.runner` for how the ensembles are run.
"""
