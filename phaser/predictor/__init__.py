"""Output-length predictor (see ``length``)."""

from phaser.predictor.length import CrossFitted, LengthPredictor, MeanPredictor, evaluate, features_of

__all__ = ["CrossFitted", "LengthPredictor", "MeanPredictor", "evaluate", "features_of"]
