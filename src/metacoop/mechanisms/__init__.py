"""Mechanisms: one file each, listed explicitly in :data:`REGISTRY`.

The registry's keys are the names accepted under ``[mechanisms]`` in a
scenario; its order is the order they appear in the resolved configuration.
The schedule order is given by each mechanism's ``phase`` and ``order``.
"""

from metacoop.mechanisms.angiogenic_switch import AngiogenicSwitch
from metacoop.mechanisms.arrest import Arrest
from metacoop.mechanisms.base import Mechanism, StepContext
from metacoop.mechanisms.circulation_death import CirculationDeath
from metacoop.mechanisms.death import Death
from metacoop.mechanisms.disaggregation import Disaggregation
from metacoop.mechanisms.dormancy import Dormancy
from metacoop.mechanisms.ecm_degradation import EcmDegradation
from metacoop.mechanisms.extravasation import Extravasation
from metacoop.mechanisms.intravasation import Intravasation
from metacoop.mechanisms.mmp2_secretion import Mmp2Secretion
from metacoop.mechanisms.movement import Movement
from metacoop.mechanisms.phenotype_switch import PhenotypeSwitch
from metacoop.mechanisms.proliferation import Proliferation

REGISTRY: dict[str, type[Mechanism]] = {
    m.name: m
    for m in (
        PhenotypeSwitch,
        Death,
        Movement,
        Proliferation,
        Mmp2Secretion,
        EcmDegradation,
        Intravasation,
        CirculationDeath,
        Disaggregation,
        Arrest,
        Extravasation,
        Dormancy,
        AngiogenicSwitch,
    )
}

__all__ = ["REGISTRY", "Mechanism", "StepContext"]
