"""Trading-restriction recommendations from alert history."""

from surveil.actions.recommend import LADDER, RECO_PARAMS, load_history, recommend

__all__ = ["LADDER", "RECO_PARAMS", "recommend", "load_history"]
