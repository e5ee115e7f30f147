"""The Trainer: mini-batch Adam(W) with weight decay, gradient clipping, early stopping on a
validation metric (``select``) with the best weights restored, a progress bar, and seeded
reproducibility."""

from __future__ import annotations

import copy
import math
import numbers
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from .data.augment import augment_batch, parse_augment
from . import distributed
from .models.regression_model import RegressionModel


#: learning-rate schedules (:class:`Trainer` ``schedule=``)
SCHEDULES = ("constant", "cosine")

#: default relative improvement that resets early stopping's patience (:class:`Trainer` ``min_delta=``)
MIN_DELTA = 2e-3

#: validation metrics that can pick the best epoch, from the prediction error (N, m)
SELECT_METRICS = {
    "mse": lambda err: err.pow(2).mean().item(),
    "rmse": lambda err: err.pow(2).mean().sqrt().item(),
    "mae": lambda err: err.abs().mean().item(),
}


class EarlyStopping:
    """Patience on a validation score (lower is better) with a relative ``min_delta``.

    ``update(score)`` records one validation; it returns True when the score is the best so far
    (the caller keeps those weights). A score resets the patience count only when it is below
    ``(1 - min_delta)`` times the score of the last reset; ``should_stop`` is True once
    ``patience`` validations in a row have not. ``patience=None`` never stops. Used by
    :class:`Trainer` and by ``benchmarks/stopping_rules.py``, which replays it on full curves.
    """

    def __init__(self, patience: int | None, min_delta: float = MIN_DELTA):
        if not 0 <= min_delta < 1:
            raise ValueError(f"min_delta must be in [0, 1), got {min_delta}")
        if patience is not None and not (isinstance(patience, numbers.Integral) and patience >= 1):
            raise ValueError(f"patience must be an int >= 1 or None, got {patience!r}")
        self.patience, self.min_delta = patience, min_delta
        self.best = math.inf
        self._reset_at, self._waited = math.inf, 0  # the score of the last reset; validations since

    def update(self, score: float) -> bool:
        improved = score < self.best
        if improved:
            self.best = score
        if score < self._reset_at * (1 - self.min_delta):
            self._reset_at, self._waited = score, 0
        else:
            self._waited += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and self._waited >= self.patience


def decay_groups(model: torch.nn.Module, params: list, weight_decay: float) -> list[dict]:
    """Optimizer parameter groups: ``params`` under ``weight_decay``, except those a submodule
    names in its ``no_weight_decay()`` hook (parameter names relative to that submodule, as in
    timm), which get none. Codec heads exempt their encoder and decoder this way."""
    exempt: set[int] = set()
    for module in model.modules():
        hook = getattr(module, "no_weight_decay", None)
        if callable(hook):
            exempt.update(id(module.get_parameter(name)) for name in hook())
    keep = [p for p in params if id(p) not in exempt]
    free = [p for p in params if id(p) in exempt]
    groups = [{"params": keep}] if keep else []
    return groups + ([{"params": free, "weight_decay": 0.0}] if free else [])


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def as_tensor(a, device: torch.device | str | None = None, dtype=torch.float32) -> Tensor:
    """A float tensor on ``device``; 1-D targets become ``(N, 1)`` when used as y."""
    t = a if isinstance(a, Tensor) else torch.as_tensor(np.asarray(a))
    return t.to(device=device, dtype=dtype)


def check_finite(name: str, a: Tensor) -> None:
    if a.numel() == 0:
        raise ValueError(f"{name} is empty")
    if not torch.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf values")


@dataclass
class History:
    """What happened during :meth:`Trainer.fit`."""

    train_loss: list[float] = field(default_factory=list)
    val_mae: list[float] = field(default_factory=list)
    val_score: list[float] = field(default_factory=list)  # the selection metric, per validation
    val_epochs: list[int] = field(default_factory=list)
    terms: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    epochs_run: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {"train_loss": self.train_loss, "val_mae": self.val_mae, "val_score": self.val_score,
                "val_epochs": self.val_epochs,
                "best_epoch": self.best_epoch, "epochs_run": self.epochs_run, "seconds": self.seconds}


class Trainer:
    """Fit a :class:`~beyondmse.models.RegressionModel`.

    Parameters
    ----------
    lr : float, default 1e-3
    weight_decay : float, default 1e-4
        Adam's L2 penalty (or AdamW's decoupled decay with ``optimizer="adamw"``), on every
        parameter except those a module exempts through a ``no_weight_decay()`` hook
        (:func:`decay_groups`; e.g. a codec head's encoder and decoder).
    batch_size : int or None, default 256
        ``None`` means full batch. A last mini-batch of fewer than three samples is merged
        into the one before it (batch-wise heads and regularizers need several samples).
    max_epochs : int, default 200
    patience : int or None, default 20
        Early stopping: stop after this many validations without improving the selection
        metric by ``min_delta``, then restore the best weights. ``None`` trains all epochs (still
        restoring the best).
    min_delta : float, default 2e-3
        The relative improvement that resets the patience count: a validation score counts as
        progress when it is below ``(1 - min_delta)`` times the score of the last reset. Smaller
        gains still update the best weights, but they do not extend training, so a run whose
        score creeps down by hundredths of a percent an epoch stops instead of running into the
        epoch cap (Keras' and Lightning's ``min_delta``, made relative because the scores' scale
        depends on the targets). ``0`` resets on any improvement. Chosen on full 300-epoch
        validation curves (``benchmarks/stopping_rules.py``; wine_quality-num: ``ls``, ``mt``,
        ``ranksim``; cpu_act-num: ``ranksim``):
        at ``1e-3`` wine's RankSim still ran into the 200-epoch cap, at ``2e-3`` none did. The
        price: their best validation RMSE ended 1.5-3.3% above the 300-epoch curves' minimum
        (0.7-3.3% with ``0`` and the cap).
    select : {"mse", "rmse", "mae"}, default "mse"
        The validation metric that picks the best epoch. ``"rmse"`` and ``"mse"`` rank epochs
        alike (the Beyond Binning papers name RMSE, the SoftStep paper MSE), but a relative
        ``min_delta`` on MSE is about half as strict as on RMSE, so they may stop at different
        epochs; ``"mae"`` is the choice when MAE is what you report.
    clip_norm : float or None, default 1.0
        Gradient-norm clipping.
    optimizer : {"adam", "adamw"}
    eval_every : int, default 1
        Validate every this many epochs.
    seed : int, default 0
        Seeds parameter initialisation (if the model is built after :func:`seed_everything`)
        and mini-batch order; the same seed gives the same numbers on the same machine.
    device : str or torch.device or None
        Defaults to CUDA when available.
    progress : bool, default False
        Show a tqdm progress bar over epochs (on rank 0 only, under several processes).
    augment : str or None, default None
        Light augmentation of image training batches: ``"flip"``, ``"crop"`` or ``"flip+crop"``
        (:mod:`beyondmse.data.augment`); ignored for non-image inputs.
    schedule : {"constant", "cosine"}, default "constant"
        Learning-rate schedule, stepped every mini-batch: ``"cosine"`` decays ``lr`` to 0 over
        ``max_epochs`` epochs, ``lr_t = lr (1 + cos(pi t / T)) / 2`` (Loshchilov & Hutter, SGDR,
        ICLR 2017, Eq. 5 without restarts), the usual companion of ``trunk="tabular"``.

    A trunk with a ``fit_inputs(X)`` method (:class:`~beyondmse.models.tabular.TabularTrunk`)
    has it called with the training inputs before the first step (its preprocessing is fitted
    on the training split only).

    Under several processes (a ``torch.distributed`` process group of P > 1, e.g. from
    ``beyondmse run --nproc P``, ``torchrun`` or Ray Train), every rank calls :meth:`fit` with the
    same data and seed: all ranks draw the same global permutation and batches of ``batch_size``
    rows, each trains on its contiguous part of every batch (the batches DistributedSampler would
    give, so P x B/P is the batch of 1 x B), the model is wrapped in DistributedDataParallel, and
    the heads and regularizers see the global batch (:mod:`beyondmse.distributed`). The memory bank
    and the validation predictions are computed in parts and gathered, so every rank takes the same
    early-stopping decision and ends with the same model.
    """

    def __init__(self, *, lr: float = 1e-3, weight_decay: float = 1e-4, batch_size: int | None = 256,
                 max_epochs: int = 200, patience: int | None = 20, min_delta: float = MIN_DELTA,
                 clip_norm: float | None = 1.0,
                 optimizer: str = "adam", eval_every: int = 1, select: str = "mse", seed: int = 0,
                 device: str | torch.device | None = None, progress: bool = False,
                 eval_batch_size: int = 8192, augment: str | None = None, schedule: str = "constant"):
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        whole = isinstance(batch_size, numbers.Integral) and not isinstance(batch_size, bool)
        if batch_size is not None and (not whole or batch_size < 2):
            raise ValueError(f"batch_size must be >= 2 or None (full batch), got {batch_size}")
        if max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {max_epochs}")
        EarlyStopping(patience, min_delta)  # raises ValueError on a bad patience or min_delta
        if select not in SELECT_METRICS:
            raise ValueError(f"unknown selection metric {select!r}; expected one of {sorted(SELECT_METRICS)}")
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown learning-rate schedule {schedule!r}; expected one of {SCHEDULES}")
        if optimizer not in ("adam", "adamw"):
            raise ValueError(f"unknown optimizer {optimizer!r}; expected 'adam' or 'adamw'")
        self.lr, self.weight_decay, self.batch_size = lr, weight_decay, batch_size
        self.max_epochs, self.patience, self.clip_norm = max_epochs, patience, clip_norm
        self.optimizer, self.eval_every, self.seed = optimizer, max(1, eval_every), seed
        self.select, self.min_delta = select, min_delta
        self.device = torch.device(device) if device is not None else default_device()
        self.progress, self.eval_batch_size = progress, eval_batch_size
        self.augment, self._augment_ops = augment, parse_augment(augment)
        self.schedule = schedule

    # ------------------------------------------------------------------ helpers
    def _batches(self, n: int, generator: torch.Generator) -> list[Tensor]:
        order = torch.randperm(n, generator=generator)
        size = n if self.batch_size is None else self.batch_size
        batches = list(order.split(size))
        if len(batches) > 1 and len(batches[-1]) < 3:
            batches[-2] = torch.cat([batches[-2], batches.pop()])
        return batches

    def _prepare(self, X, y, what: str) -> tuple[Tensor, Tensor]:
        X = as_tensor(X, self.device)
        y = as_tensor(y, self.device)
        if y.dim() == 1:
            y = y[:, None]
        check_finite(f"{what} features", X)
        check_finite(f"{what} targets", y)
        if len(X) != len(y):
            raise ValueError(f"{what} features have {len(X)} rows but targets have {len(y)}")
        return X, y

    # ------------------------------------------------------------------ API
    def fit(self, model: RegressionModel, X_train, y_train, X_val=None, y_val=None) -> History:
        """Train ``model`` in place on ``(X_train (N, ...), y_train (N, m))``.

        Validation data enable early stopping; without them the model trains ``max_epochs``
        and the last weights are kept.
        """
        X, y = self._prepare(X_train, y_train, "training")
        if len(X) < 2:
            raise ValueError(f"need at least 2 training samples, got {len(X)}")
        if y.shape[1] != model.target_dim:
            raise ValueError(f"model predicts {model.target_dim} target(s) but y has {y.shape[1]} column(s)")
        has_val = X_val is not None and y_val is not None
        if has_val:
            Xv, yv = self._prepare(X_val, y_val, "validation")
        model.to(self.device)
        model.head.fit_targets(y)
        fit_inputs = getattr(model.trunk, "fit_inputs", None)
        if callable(fit_inputs):  # trunk preprocessing fitted on the training split (trunk="tabular")
            fit_inputs(X)
        if distributed.is_distributed():
            self._check_same_on_all_ranks(len(X), len(Xv) if has_val else 0)
        step = distributed.wrap_for_training(model)  # DistributedDataParallel under several processes
        part = distributed.local_part  # this rank's rows (all rows in one process)
        opt_cls = torch.optim.AdamW if self.optimizer == "adamw" else torch.optim.Adam
        params = [p for p in model.parameters() if p.requires_grad]
        opt = opt_cls(decay_groups(model, params, self.weight_decay), lr=self.lr, weight_decay=self.weight_decay)
        gen = torch.Generator().manual_seed(self.seed)
        sched = self._scheduler(opt, len(self._batches(len(X), torch.Generator().manual_seed(0))))
        hist = History()
        stopping, best_state = EarlyStopping(self.patience, self.min_delta), None
        start = time.perf_counter()
        bar = tqdm(range(1, self.max_epochs + 1), disable=not (self.progress and distributed.is_main_process()),
                   desc="epochs", leave=False)
        for epoch in bar:
            model.train()
            total, count, term_sums = 0.0, 0, {}
            for idx in self._batches(len(X), gen):
                idx = idx.to(self.device)
                xb = augment_batch(X[idx], self._augment_ops, gen) if self._augment_ops else X[idx]
                out = step(part(xb), part(y[idx]))  # the loss of the global batch idx
                if not torch.isfinite(out.total):
                    raise FloatingPointError(f"non-finite training loss at epoch {epoch}: {out.terms}")
                opt.zero_grad(set_to_none=True)
                out.total.backward()
                if self.clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(params, self.clip_norm)
                opt.step()
                if sched is not None:
                    sched.step()
                total += out.total.item() * len(idx)
                count += len(idx)
                for k, v in out.terms.items():
                    term_sums[k] = term_sums.get(k, 0.0) + float(v) * len(idx)
            hist.train_loss.append(total / count)
            hist.terms.append({k: v / count for k, v in term_sums.items()})
            hist.epochs_run = epoch
            if has_val and (epoch % self.eval_every == 0 or epoch == self.max_epochs):
                model.fit_memory_from(part(X), part(y))
                err = self._predict_parts(model, Xv) - yv
                mae = err.abs().mean().item()
                score = SELECT_METRICS[self.select](err)
                hist.val_mae.append(mae)
                hist.val_score.append(score)
                hist.val_epochs.append(epoch)
                bar.set_postfix(loss=f"{hist.train_loss[-1]:.4g}", **{f"val_{self.select}": f"{score:.4g}"})
                if stopping.update(score):
                    hist.best_epoch, best_state = epoch, copy.deepcopy(model.state_dict())
                if stopping.should_stop:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        else:
            hist.best_epoch = hist.epochs_run
        model.fit_memory_from(part(X), part(y))
        model.eval()
        hist.seconds = time.perf_counter() - start
        return hist

    def _scheduler(self, opt: torch.optim.Optimizer, steps_per_epoch: int):
        """The learning-rate scheduler of ``schedule`` (None for a constant rate)."""
        if self.schedule == "constant":
            return None
        total = max(1, self.max_epochs * steps_per_epoch)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5 * (1 + math.cos(math.pi * min(t, total) / total)))

    def _check_same_on_all_ranks(self, *values: int) -> None:
        """Every rank must fit on the same data (a clear error, the same on all ranks)."""
        seen = distributed.gather_rows(torch.tensor([values], dtype=torch.long, device=self.device)).cpu()
        if not (seen == seen[0]).all():
            raise ValueError(f"every process must pass the same training/validation data to Trainer.fit; "
                             f"rows per rank (training, validation): {seen.tolist()}")

    def _predict_parts(self, model: RegressionModel, X: Tensor) -> Tensor:
        """:meth:`predict` on ``X``; under several processes each rank predicts its part and the
        parts are gathered (a collective), so every rank holds the same predictions."""
        if not distributed.is_distributed():
            return self.predict(model, X)
        mine = distributed.local_part(X)
        local = self.predict(model, mine) if len(mine) else torch.zeros(0, model.target_dim, device=self.device)
        return distributed.gather_rows(local)

    @torch.no_grad()
    def predict(self, model: RegressionModel, X) -> Tensor:
        """Predictions ``(N, m)`` in eval mode, computed in chunks of ``eval_batch_size``."""
        X = as_tensor(X, self.device)
        check_finite("features", X)
        was_training = model.training
        model.eval()
        out = torch.cat([model(X[i:i + self.eval_batch_size]) for i in range(0, len(X), self.eval_batch_size)])
        model.train(was_training)
        return out

    @torch.no_grad()
    def predict_distribution(self, model: RegressionModel, X, **options):
        """The predictive distribution (:class:`~beyondmse.distributions.Mixture`, batch (N, m))
        in eval mode: embeddings in chunks of ``eval_batch_size``, then the head's
        ``predict_distribution(z, **options)`` (which bounds its own memory). Raises
        :class:`~beyondmse.distributions.NoDistributionError` for a point head."""
        X = as_tensor(X, self.device)
        check_finite("features", X)
        was_training = model.training
        model.eval()
        try:
            z = torch.cat([model.embed(X[i:i + self.eval_batch_size]) for i in range(0, len(X), self.eval_batch_size)])
            return model.head.predict_distribution(z, **options)
        finally:
            model.train(was_training)
