"""Output-length predictor (see ``length``)."""

from phaser.predictor.length import LengthPredictor, MeanPredictor, evaluate, features_of

__all__ = ["LengthPredictor", "MeanPredictor", "evaluate", "features_of"]
