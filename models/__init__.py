"""Anomaly models for axedge: train on datasets, export to ONNX, score at the edge, evaluate.

``models.train(data, signals=None, kind="auto", time_column="time") -> Bundle``,
``Bundle.save(dir)``, ``models.load(dir)``, ``Bundle.score(data)``. onnxruntime is imported only
when a model runs, so ``import models`` stays light.
"""

from models.bundle import Bundle, load
from models.errors import BundleError, InputMismatch, ModelError, TrainingDataError
from models.train import train

__all__ = ["Bundle", "BundleError", "InputMismatch", "ModelError", "TrainingDataError", "load", "train"]
