"""Metrics: face verification (LFW protocol) and the paper's explainability measures."""
from .verification import (embed, pair_scores, kfold_accuracy, roc_auc, tar_at_far,  # noqa: F401
                           verification_report)
