"""The clone trait table: one row per clone, one column per trait.

"Metastatic" and "non-metastatic" are trait settings, never code paths. Kernels
read traits as ``[clone, phenotype]`` tables (phenotype 0 epithelial, 1
mesenchymal) built here once from the configuration.

Cell cycle. A clone's ``doubling_time_h`` is the population doubling time at
low density. Cycle durations are Gamma distributed with coefficient of
variation ``cycle_cv`` (shape ``k = 1 / cv**2``), so divisions are not
synchronised. For a Gamma(k, theta) cycle the Malthusian growth rate
``lambda`` solves the Euler-Lotka equation ``2 E[exp(-lambda T)] = 1``, i.e.
``(1 + lambda theta)**-k = 1/2``, hence ``theta = (2**(1/k) - 1) / lambda``
with ``lambda = ln 2 / doubling_time_h``. The population then grows as
``exp(lambda t)`` exactly in the asymptotic regime.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np

PHENOTYPES = ("epithelial", "mesenchymal")


def cycle_gamma(doubling_time_h: float, cycle_cv: float) -> tuple[float, float]:
    """Gamma ``(shape, scale_h)`` of cycle durations giving the doubling time asked for."""
    if not math.isfinite(doubling_time_h):
        return (1.0, math.inf)
    k = 1.0 / cycle_cv**2
    # (as a Python float: a doubling time so short that the rate overflows gives cycles of 0 h, without
    # NumPy's overflow warning for a NumPy scalar; the same bits otherwise)
    lam = math.log(2.0) / float(doubling_time_h)
    return (k, math.expm1(math.log(2.0) / k) / lam)


#: Traits that phenotypic diversification may vary, with how they vary: ``rate`` traits
#: (non-negative) are multiplied by a log-normal factor, ``probability`` traits are shifted on
#: the logit scale. Per-phenotype traits vary by one factor for both phenotypes. Motility
#: traits (diffusion, haptotaxis, chemotaxis) do not vary: the movement rule's stability was
#: checked for the scenario's clones before the run.
VARIABLE_TRAITS = {
    "doubling_time_h": "rate", "death_rate_per_h": "rate", "mmp2_secretion_per_h": "rate",
    "mt1mmp_degradation_per_h": "rate", "emt_rate_per_h": "rate", "met_rate_per_h": "rate",
    "extravasation_competence": "rate", "dormant_death_rate_per_h": "rate", "wake_rate_per_h": "rate",
    "gf_secretion_per_h": "rate", "csf1_secretion_per_h": "rate", "eselectin_induction": "rate",
    "anoikis_resistance": "probability", "cohesion": "probability", "dormancy_probability": "probability",
}


@dataclass
class CloneTable:
    """Traits of every clone as arrays, with room for clones created during the run.

    Rows ``0..len(names)-1`` are the clones that exist; the arrays have
    ``len(table)`` rows (the capacity), so kernels and per-clone counters can
    index clones created later by phenotypic diversification without
    reallocation. Unused rows are zero.

    Attributes:
        names: clone names, row order.
        doubling_time_h, death_rate_per_h, diffusion_um2_per_h, haptotaxis_um2_per_h,
        mmp2_secretion_per_h, mt1mmp_degradation_per_h: float64 ``[clone, phenotype]``.
        cycle_shape: Gamma shape of cycle durations ``[clone, phenotype]``.
        cycle_scale_h: Gamma scale of cycle durations, h ``[clone, phenotype]``.
        emt_rate_per_h, met_rate_per_h: float64 ``[clone]``.
        anoikis_resistance, cohesion, extravasation_competence, dormancy_probability,
        dormant_death_rate_per_h, wake_rate_per_h, gf_secretion_per_h, csf1_secretion_per_h,
        eselectin_induction: float64 ``[clone]``.
        egf_chemotaxis_um2_per_h: float64 ``[clone, phenotype]``.
        leader: bool ``[clone]``.
        cycle_cv: coefficient of variation of cycle durations ``[clone]``.
        parent: the clone each clone arose from, -1 for the scenario's clones ``[clone]``.
        created_h: time each clone arose, h (0 for the scenario's clones) ``[clone]``.
    """

    names: list[str]
    doubling_time_h: np.ndarray
    cycle_shape: np.ndarray
    cycle_scale_h: np.ndarray
    death_rate_per_h: np.ndarray
    diffusion_um2_per_h: np.ndarray
    haptotaxis_um2_per_h: np.ndarray
    mmp2_secretion_per_h: np.ndarray
    mt1mmp_degradation_per_h: np.ndarray
    emt_rate_per_h: np.ndarray
    met_rate_per_h: np.ndarray
    anoikis_resistance: np.ndarray
    cohesion: np.ndarray
    extravasation_competence: np.ndarray
    dormancy_probability: np.ndarray
    dormant_death_rate_per_h: np.ndarray
    wake_rate_per_h: np.ndarray
    leader: np.ndarray
    gf_secretion_per_h: np.ndarray
    csf1_secretion_per_h: np.ndarray
    egf_chemotaxis_um2_per_h: np.ndarray
    eselectin_induction: np.ndarray
    cycle_cv: np.ndarray = field(default_factory=lambda: np.zeros(0))
    parent: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    created_h: np.ndarray = field(default_factory=lambda: np.zeros(0))

    @classmethod
    def from_config(cls, clones, capacity: int | None = None) -> CloneTable:
        """Build the table from the ``clones`` list of a scenario, with room for ``capacity`` clones."""

        def per_phen(attr: str) -> np.ndarray:
            return np.array([getattr(c, attr).as_tuple() for c in clones], dtype=np.float64)

        def per_clone(attr: str) -> np.ndarray:
            return np.array([getattr(c, attr) for c in clones], dtype=np.float64)

        td = per_phen("doubling_time_h")
        shape = np.empty_like(td)
        scale = np.empty_like(td)
        for i, c in enumerate(clones):
            for j in range(2):
                shape[i, j], scale[i, j] = cycle_gamma(td[i, j], c.cycle_cv)
        table = cls(
            names=[c.name for c in clones],
            doubling_time_h=td,
            cycle_shape=shape,
            cycle_scale_h=scale,
            death_rate_per_h=per_phen("death_rate_per_h"),
            diffusion_um2_per_h=per_phen("diffusion_um2_per_h"),
            haptotaxis_um2_per_h=per_phen("haptotaxis_um2_per_h"),
            mmp2_secretion_per_h=per_phen("mmp2_secretion_per_h"),
            mt1mmp_degradation_per_h=per_phen("mt1mmp_degradation_per_h"),
            emt_rate_per_h=per_clone("emt_rate_per_h"),
            met_rate_per_h=per_clone("met_rate_per_h"),
            anoikis_resistance=per_clone("anoikis_resistance"),
            cohesion=per_clone("cohesion"),
            extravasation_competence=per_clone("extravasation_competence"),
            dormancy_probability=per_clone("dormancy_probability"),
            dormant_death_rate_per_h=per_clone("dormant_death_rate_per_h"),
            wake_rate_per_h=per_clone("wake_rate_per_h"),
            leader=np.array([c.leader for c in clones], dtype=bool),
            gf_secretion_per_h=per_clone("gf_secretion_per_h"),
            csf1_secretion_per_h=per_clone("csf1_secretion_per_h"),
            egf_chemotaxis_um2_per_h=per_phen("egf_chemotaxis_um2_per_h"),
            eselectin_induction=per_clone("eselectin_induction"),
            cycle_cv=per_clone("cycle_cv"),
            parent=np.full(len(clones), -1, np.int32),
            created_h=np.zeros(len(clones)),
        )
        if capacity is not None and capacity > len(clones):
            table._grow(capacity)
        return table

    def arrays(self) -> dict[str, np.ndarray]:
        """Every per-clone array by name (all rows, the capacity)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "names"}

    def _grow(self, capacity: int) -> None:
        for name, arr in self.arrays().items():
            grown = np.zeros((capacity, *arr.shape[1:]), arr.dtype)
            grown[: arr.shape[0]] = arr
            setattr(self, name, grown)
        self.parent[len(self.names):] = -1

    def __len__(self) -> int:
        """Rows of the table (its capacity): clones that exist plus room for new ones."""
        return int(self.doubling_time_h.shape[0])

    @property
    def n_existing(self) -> int:
        """Clones that exist (rows ``0..n_existing-1``)."""
        return len(self.names)

    def add(self, parent: int, name: str, created_h: float, factors: dict[str, float]) -> int:
        """Create a clone from ``parent`` with traits changed by ``factors``; return its row.

        ``factors`` maps trait names of :data:`VARIABLE_TRAITS` to a standard-normal
        shift times the spread: ``rate`` traits are multiplied by ``exp(shift)``,
        ``probability`` traits moved by ``shift`` on the logit scale. The cycle
        Gamma follows the new doubling time. Raises ``IndexError`` when full.
        """
        row = len(self.names)
        if row >= len(self):
            raise IndexError("the clone table is full")
        for arr in self.arrays().values():
            arr[row] = arr[parent]
        for trait, shift in factors.items():
            arr = getattr(self, trait)
            if VARIABLE_TRAITS[trait] == "rate":
                arr[row] = arr[parent] * math.exp(shift)
            elif 0.0 < arr[parent] < 1.0:  # 0 and 1 are kept: no logit exists there
                p = float(arr[parent])
                arr[row] = 1.0 / (1.0 + math.exp(-(math.log(p / (1.0 - p)) + shift)))
        for j in range(2):
            self.cycle_shape[row, j], self.cycle_scale_h[row, j] = cycle_gamma(
                float(self.doubling_time_h[row, j]), float(self.cycle_cv[row]))
        self.parent[row] = parent
        self.created_h[row] = created_h
        self.names.append(name)
        return row

    def index(self, name: str) -> int:
        """Row of the clone called ``name``."""
        return self.names.index(name)


#: Columns of the table that are clone traits (written to ``clones.parquet``).
TRAIT_COLUMNS = tuple(f.name for f in fields(CloneTable)
                      if f.name not in ("names", "cycle_shape", "cycle_scale_h", "parent", "created_h"))


def stable_residual_cycles(
    rng: np.random.Generator, shape: np.ndarray, scale_h: np.ndarray, doubling_time_h: np.ndarray
) -> np.ndarray:
    """Time to next division of cells drawn from the stable age distribution, h.

    In a population growing at ``lambda = ln 2 / doubling_time_h`` the cell ages
    ``a`` and cycle lengths ``T`` have joint density proportional to
    ``exp(-lambda a) f(T)`` on ``a < T``: ``T`` has density proportional to
    ``f(T) (1 - exp(-lambda T))`` (drawn by rejection) and, given ``T``, the age
    is exponential with rate ``lambda`` truncated to ``[0, T]``. Starting from
    these clocks the expected population is exactly ``N0 exp(lambda t)``, with
    no start-up transient. Cells that never divide get ``inf``.
    """
    out = np.full(shape.shape, np.inf)
    todo = np.flatnonzero(np.isfinite(scale_h) & np.isfinite(doubling_time_h))
    lam = np.log(2.0) / doubling_time_h
    while todo.size:
        t = rng.gamma(shape[todo], scale_h[todo])
        keep = rng.random(todo.size) < -np.expm1(-lam[todo] * t)
        done, t = todo[keep], t[keep]
        tail = -np.expm1(-lam[done] * t)
        age = -np.log1p(-rng.random(done.size) * tail) / lam[done]
        out[done] = t - age
        todo = todo[~keep]
    return out


def per_step_probability(rate_per_h: np.ndarray | float, dt_h: float) -> np.ndarray:
    """Probability that an event of constant hazard ``rate_per_h`` occurs within ``dt_h``."""
    return -np.expm1(-np.asarray(rate_per_h, dtype=np.float64) * dt_h)
