"""Virtual-time cluster simulator: ``ClusterSim`` (steppable, for RL),
``simulate`` (run a policy to the end), summary metrics and record export."""

from phaser.sim.metrics import summarize
from phaser.sim.records import write_records
from phaser.sim.simulator import (ClusterSim, NullPredictor, OraclePredictor, RewardInputs, SimConfig, SimResult,
                                  simulate)

__all__ = ["ClusterSim", "SimConfig", "SimResult", "RewardInputs", "NullPredictor", "OraclePredictor", "simulate",
           "summarize", "write_records"]
