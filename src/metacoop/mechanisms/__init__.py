"""Mechanisms: one file each, listed explicitly in :data:`REGISTRY`.

The registry's keys are the names accepted under ``[mechanisms]`` in a
scenario; its order is the order they appear in the resolved configuration.
The schedule order is given by each mechanism's ``phase`` and ``order``.
"""

from metacoop.mechanisms.adhesion_induction import AdhesionInduction
from metacoop.mechanisms.angiogenic_switch import AngiogenicSwitch
from metacoop.mechanisms.arrest import Arrest
from metacoop.mechanisms.base import Mechanism, StepContext
from metacoop.mechanisms.circulation_death import CirculationDeath
from metacoop.mechanisms.collective_migration import CollectiveMigration
from metacoop.mechanisms.death import Death
from metacoop.mechanisms.disaggregation import Disaggregation
from metacoop.mechanisms.diversification import Diversification
from metacoop.mechanisms.dormancy import Dormancy
from metacoop.mechanisms.ecm_degradation import EcmDegradation
from metacoop.mechanisms.emboli_protection import EmboliProtection
from metacoop.mechanisms.extravasation import Extravasation
from metacoop.mechanisms.growth_factor import GrowthFactor
from metacoop.mechanisms.intravasation import Intravasation
from metacoop.mechanisms.mmp2_secretion import Mmp2Secretion
from metacoop.mechanisms.movement import Movement
from metacoop.mechanisms.niche import Niche
from metacoop.mechanisms.paracrine import Paracrine
from metacoop.mechanisms.phenotype_switch import PhenotypeSwitch
from metacoop.mechanisms.proliferation import Proliferation
from metacoop.mechanisms.protease_public_good import ProteasePublicGood
from metacoop.mechanisms.shedding_waves import SheddingWaves
from metacoop.mechanisms.vessel_disruption import VesselDisruption

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
        EmboliProtection,
        # the class action: cooperation through the microenvironment (off unless enabled)
        CollectiveMigration,
        ProteasePublicGood,
        Paracrine,
        GrowthFactor,
        VesselDisruption,
        Niche,
        AdhesionInduction,
        SheddingWaves,
        Diversification,
    )
}

#: The cooperation mechanisms of the class action (Bidard et al. 2008), in DESIGN order.
COOPERATION = ("collective_migration", "protease_public_good", "vessel_disruption", "emboli_protection",
               "niche", "adhesion_induction", "shedding_waves", "paracrine", "growth_factor",
               "diversification")

__all__ = ["COOPERATION", "REGISTRY", "Mechanism", "StepContext"]
