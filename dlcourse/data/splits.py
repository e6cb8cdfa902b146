"""How the training pool is divided into the images trained on and the validation images: a
seeded random hold-out, or one fold of k-fold cross-validation (scikit-learn's KFold /
StratifiedKFold). The test set is never part of it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

from dlcourse.errors import ConfigError


@dataclass(frozen=True)
class Split:
    val_split: float = 0.1  # hold-out fraction (ignored with folds)
    seed: int = 0  # draws the hold-out, or shuffles the folds
    folds: Optional[int] = None  # k of k-fold cross-validation; None = hold-out
    fold: int = 0  # which fold is held out for validation
    stratified: bool = True  # folds keep the class proportions

    def indices(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sorted, disjoint index sets (train, validation) into `labels`; the same for the same split."""
        n = len(labels)
        if self.folds is None:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
            n_val = int(round(n * self.val_split))
            return order[n_val:].sort().values, order[:n_val].sort().values
        from sklearn.model_selection import KFold, StratifiedKFold

        # regression targets have no classes to keep in proportion
        kind = StratifiedKFold if self.stratified and not labels.is_floating_point() else KFold
        splitter = kind(n_splits=self.folds, shuffle=True, random_state=self.seed)
        try:
            train, val = list(splitter.split(np.zeros(n), labels.cpu().numpy()))[self.fold]
        except ValueError as e:
            raise ConfigError(f"cv.folds={self.folds} cannot split {n} training images: {e}. Use fewer folds, "
                              "or cv.stratified=false.") from None
        return torch.from_numpy(np.sort(train)), torch.from_numpy(np.sort(val))
