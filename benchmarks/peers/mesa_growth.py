"""Lattice growth in Mesa: the peer side of the growth benchmark (runs in the peers' virtual environment).

    python mesa_growth.py TARGET_CELLS SEED

One agent per lattice point (Mesa ``SingleGrid``, von Neumann neighbourhood,
no torus) on a square grid large enough for ``TARGET_CELLS``. Every step each
agent, in random order (``RandomActivation``), dies with q = 0.01, otherwise
divides with p = 0.5 into a random empty neighbour (if it has one). The run
starts from one cell and stops at the first step that ends with at least
``TARGET_CELLS`` agents. Prints one JSON line: steps, agents, agent-steps and
wall seconds of the stepping (model construction excluded).
"""

import json
import math
import sys
import time

import mesa

P_DIVIDE, Q_DIE = 0.5, 0.01


class Cell(mesa.Agent):
    """A tumour cell on the lattice."""

    def step(self):
        """Die, or divide into a random empty neighbour."""
        model = self.model
        if model.random.random() < Q_DIE:
            model.grid.remove_agent(self)
            model.schedule.remove(self)
            return
        if model.random.random() < P_DIVIDE:
            around = model.grid.get_neighborhood(self.pos, moore=False)
            empty = [p for p in around if model.grid.is_cell_empty(p)]
            if empty:
                daughter = Cell(model.next_id(), model)
                model.grid.place_agent(daughter, model.random.choice(empty))
                model.schedule.add(daughter)


class Growth(mesa.Model):
    """A colony growing from one cell in the centre of the grid."""

    def __init__(self, side, seed):
        super().__init__(seed=seed)
        self.grid = mesa.space.SingleGrid(side, side, torus=False)
        self.schedule = mesa.time.RandomActivation(self)
        first = Cell(self.next_id(), self)
        self.grid.place_agent(first, (side // 2, side // 2))
        self.schedule.add(first)

    def step(self):
        """Every agent acts once, in random order."""
        self.schedule.step()


def main():
    target, seed = int(sys.argv[1]), int(sys.argv[2])
    side = int(2 * math.sqrt(target / math.pi) * 1.6) + 11  # the colony is a disc; leave room around it
    model = Growth(side, seed)
    agent_steps = 0
    t0 = time.perf_counter()
    while 0 < model.schedule.get_agent_count() < target:
        agent_steps += model.schedule.get_agent_count()
        model.step()
    wall = time.perf_counter() - t0
    print(json.dumps({"steps": model.schedule.steps, "agents": model.schedule.get_agent_count(),
                      "agent_steps": agent_steps, "wall_s": wall, "side": side, "mesa": mesa.__version__}))


if __name__ == "__main__":
    main()
