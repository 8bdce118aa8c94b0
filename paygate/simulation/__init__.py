"""A seed-replayable simulation of a utility's month: every channel, every fault, the service
promise measured. ``paygate simulate`` runs it; docs/simulation.md explains it."""

from paygate.simulation.faults import PROFILES, FaultProfile, load_profile
from paygate.simulation.report import Promise, SimulationResult
from paygate.simulation.runner import BUGS, InvariantBroken, SimulationConfig, run_simulation

__all__ = [
    "BUGS",
    "PROFILES",
    "FaultProfile",
    "InvariantBroken",
    "Promise",
    "SimulationConfig",
    "SimulationResult",
    "load_profile",
    "run_simulation",
]
