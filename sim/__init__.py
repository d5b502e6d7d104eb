"""The planner's wing: a SimPy model of a group-buy / flash-sale campaign, replications with
common random numbers, KPI confidence intervals, scenario comparison and the output files.

Public interface (others build on these names): KPI_NAMES, simulate_once, RunResult,
replicate, summarize, KpiSummary, run_simulation, SimulationRun, compare_scenarios.
"""

from sim.compare import Comparison, compare_scenarios, write_comparison
from sim.model import KPI_NAMES, Recording, RunResult, simulate_once
from sim.replicate import replicate, replication_seeds
from sim.run import SimulationRun, load_simulatable, run_simulation
from sim.stats import KpiSummary, paired_differences, summarize

__all__ = [
    "KPI_NAMES",
    "Comparison",
    "KpiSummary",
    "Recording",
    "RunResult",
    "SimulationRun",
    "compare_scenarios",
    "load_simulatable",
    "paired_differences",
    "replicate",
    "replication_seeds",
    "run_simulation",
    "simulate_once",
    "summarize",
    "write_comparison",
]
