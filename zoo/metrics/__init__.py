"""Metrics: face verification (LFW protocol) and the paper's explainability measures."""
from .verification import (
    embed,
    kfold_accuracy,
    pair_scores,
    roc_auc,
    tar_at_far,
    verification_report,
)
