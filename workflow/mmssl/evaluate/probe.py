"""Linear evaluation of frozen latents (paper 3.2.1).

Inputs are the raw encoder latents z (N, D) of one source, split into train / validation /
eval sets by the caller. Hyper-parameters are chosen on the validation split only; the
eval splits are scored once, after the choice is made.

- ``linear_probe``: multi-class (natural images). A linear layer trained for 50 epochs
  with Adam (paper), or sklearn's multinomial logistic regression (``kind="logreg"``).
- ``tuned_logistic_probe``: binary (OASIS-3, HC vs AD). Elastic-net logistic regression
  whose C and l1_ratio Optuna tunes for validation ROC AUC (authors' code: 500 trials).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, brier_score_loss, roc_auc_score
from sklearn.preprocessing import LabelEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from mmssl.evaluate.uncertainty import bootstrap_ci
from mmssl.progress import Progress
from mmssl.settings import schema_settings

if TYPE_CHECKING:
    import torch
    from torch import nn

log = logging.getLogger(__name__)

EvalSets = dict[str, tuple[np.ndarray, np.ndarray]]
# the keys of one row of each probe, in order (a row the probe cannot compute has them too)
LINEAR_PROBE_KEYS = ("split", "accuracy", "balanced_accuracy", "n", "ci_low", "ci_high", "val_accuracy", "hyperparameter")
TUNED_PROBE_KEYS = ("split", "roc_auc", "balanced_accuracy", "brier", "n", "ci_low", "ci_high", "C", "l1_ratio",
                    "val_roc_auc")
# (predict: standardised z (N, D) -> class indices (N,), validation accuracy, description)
Fitted = tuple[Callable[[np.ndarray], np.ndarray], float, str]


@schema_settings("probe.multiclass")
class LinearProbeSettings:
    """Multi-class probe settings (config ``evaluate.probe`` for image datasets).

    kind: ``linear`` (torch nn.Linear + Adam, paper) or ``logreg`` (sklearn lbfgs).
    lr, epochs, batch_size, weight_decays: Adam training of the linear layer; the weight
    decay is chosen from ``weight_decays`` by validation accuracy.
    Cs, max_iter: grid of inverse regularisation and iteration cap for ``logreg``.
    seed: makes initialisation, shuffling and solvers deterministic.
    Every default is the config schema's (``probe.multiclass``).
    """

    kind: str
    lr: float
    epochs: int
    batch_size: int
    max_iter: int
    seed: int
    weight_decays: tuple[float, ...]
    """The weight decays tried on validation (kind linear)."""
    Cs: tuple[float, ...]
    """The inverse regularisation strengths C tried on validation (kind logreg)."""

    def __post_init__(self) -> None:
        # config lists become tuples of floats: the frozen settings stay hashable, and
        # the chosen value reads the same ("C=1.0") whether it came from YAML's 1 or 1.0
        object.__setattr__(self, "weight_decays", tuple(float(v) for v in self.weight_decays))
        object.__setattr__(self, "Cs", tuple(float(v) for v in self.Cs))
        if self.kind not in ("linear", "logreg"):
            raise ValueError(f"probe kind must be 'linear' or 'logreg'; got {self.kind!r}")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0 or self.max_iter < 1:
            raise ValueError(f"epochs, batch_size, max_iter must be >= 1 and lr > 0; got {self}")
        if not self.weight_decays or not self.Cs:
            raise ValueError("weight_decays and Cs must each list at least one value")


@schema_settings("probe.binary")
class TunedProbeSettings:
    """Binary probe settings (config ``evaluate.probe`` for OASIS-3).

    n_trials: total Optuna trials (paper: 500); a resumed study only runs the missing ones.
    max_iter: saga iteration cap per fit (authors' code: 200).
    C_min, C_max: log-uniform search range of C. seed: TPE sampler and saga shuffling.
    Every default is the config schema's (``probe.binary``).
    """

    n_trials: int
    max_iter: int
    C_min: float
    C_max: float
    seed: int

    def __post_init__(self) -> None:
        if self.n_trials < 1 or self.max_iter < 1:
            raise ValueError(f"n_trials and max_iter must be >= 1; got {self}")
        if not 0 < self.C_min < self.C_max:
            raise ValueError(f"need 0 < C_min < C_max; got C_min={self.C_min}, C_max={self.C_max}")



# ---------------------------------------------------------------- shared helpers


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch and BLAS on one thread. The probe's matrices are tiny (<= N x 64), so
    threads only add synchronisation; on a busy node (Snakemake runs jobs side by side)
    spinning BLAS/torch threads made the same probe 30-90x slower (measured: 28 s vs 0.8 s)."""
    # torch only when loaded: the binary (MRI) probe is sklearn alone, and importing torch
    # there cost a job ~1-2 s of start-up for nothing
    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def _check_split(name: str, z: np.ndarray, y: np.ndarray, dim: int | None = None) -> None:
    z, y = np.asarray(z), np.asarray(y)
    if z.ndim != 2 or y.ndim != 1 or len(z) != len(y):
        raise ValueError(f"split {name!r}: expected z (N, D) and y (N,); got z {z.shape}, y {y.shape}")
    if len(y) == 0:
        raise ValueError(f"split {name!r} is empty")
    if dim is not None and z.shape[1] != dim:
        raise ValueError(f"split {name!r}: z has {z.shape[1]} features, train has {dim}")
    if not np.all(np.isfinite(z)):
        raise ValueError(f"split {name!r}: z {z.shape} contains non-finite values")


def _check_all(z_train: np.ndarray, y_train: np.ndarray, z_val: np.ndarray, y_val: np.ndarray, z_eval: EvalSets) -> None:
    _check_split("train", z_train, y_train)
    dim = np.asarray(z_train).shape[1]
    _check_split("val", z_val, y_val, dim)
    if not z_eval:
        raise ValueError("no eval split given")
    for name, (z, y) in z_eval.items():
        _check_split(name, z, y, dim)


def _class_counts(y: np.ndarray) -> dict[Any, int]:
    values, counts = np.unique(y, return_counts=True)
    return {v.item() if hasattr(v, "item") else v: int(c) for v, c in zip(values, counts)}


def probe_shortfalls(y_train: np.ndarray, y_val: np.ndarray, y_eval: dict[str, np.ndarray], binary: bool) -> dict[str, str]:
    """Why a probe cannot score some eval split: eval split name -> reason (empty: it can
    score every one). y_*: (N,) labels of each split (binary: 0/1); y_eval: split -> (N,).

    The conditions under which :func:`linear_probe` (``binary`` False) or
    :func:`tuned_logistic_probe` would raise on the data itself: an empty split; train with
    one class; for the binary probe, a val or eval split with one class (no ROC AUC); for
    the multi-class one, val or eval labels absent from train. A train or val shortfall
    stops every eval split. Callers with a source that few samples have ask first, and
    report the split as n/a instead of failing the whole run.
    """
    def lacking(name: str, y: np.ndarray, classes: np.ndarray | None) -> str | None:
        y = np.asarray(y)
        if len(y) == 0:
            return f"no {name} samples"
        if (name == "train" or binary) and len(np.unique(y)) < 2:
            return f"the {name} samples hold one class {_class_counts(y)}"
        if classes is not None and not binary:
            unseen = sorted(set(np.unique(y).tolist()) - set(classes.tolist()))
            if unseen:
                return f"{name} labels {unseen} are in no train sample"
        return None

    train = lacking("train", y_train, None)
    first = train or lacking("val", y_val, np.unique(y_train))
    if first:
        return {name: first for name in y_eval}
    found = {name: lacking(name, y, np.unique(y_train)) for name, y in y_eval.items()}
    return {name: why for name, why in found.items() if why}


# ---------------------------------------------------------------- multi-class probe


def _train_linear(x: torch.Tensor, y: torch.Tensor, n_classes: int, weight_decay: float, s: LinearProbeSettings) -> nn.Linear:
    """Adam on cross-entropy; x (N, D) standardised float32, y (N,) int64 class indices."""
    import torch
    from torch import nn

    # fork_rng: seeding must not disturb the caller's global torch RNG
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        layer = nn.Linear(x.shape[1], n_classes)
        gen = torch.Generator().manual_seed(s.seed)
        opt = torch.optim.Adam(layer.parameters(), lr=s.lr, weight_decay=weight_decay)
        loss_fn = nn.CrossEntropyLoss()
        for _ in range(s.epochs):
            order = torch.randperm(len(x), generator=gen)
            for batch in order.split(s.batch_size):
                opt.zero_grad(set_to_none=True)
                loss_fn(layer(x[batch]), y[batch]).backward()
                opt.step()
    return layer


def _fit_linear_kind(
    xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray, n_classes: int, s: LinearProbeSettings
) -> Fitted:
    """Grid over weight decay, selected by validation accuracy."""
    import torch  # the multiclass probe (the paper's nn.Linear + Adam) alone needs it

    xt = torch.from_numpy(xtr.astype(np.float32))
    yt = torch.from_numpy(ytr.astype(np.int64))
    best = None
    for wd in s.weight_decays:
        layer = _train_linear(xt, yt, n_classes, float(wd), s)
        acc = accuracy_score(yva, _predict_torch(layer, xva))
        if best is None or acc > best[1]:  # strict: ties keep the weaker regulariser listed first
            best = (layer, acc, f"weight_decay={wd}")
    layer, acc, desc = best
    return (lambda x: _predict_torch(layer, x)), acc, desc


def _predict_torch(layer: nn.Linear, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return layer(torch.from_numpy(x.astype(np.float32))).argmax(dim=1).numpy()


def _fit_logreg_kind(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray, s: LinearProbeSettings) -> Fitted:
    """Grid over C; lbfgs on more than two classes is multinomial (sklearn's default)."""
    best = None
    for c in s.Cs:
        model = LogisticRegression(C=float(c), solver="lbfgs", max_iter=s.max_iter, random_state=s.seed)
        model.fit(xtr, ytr)
        acc = accuracy_score(yva, model.predict(xva))
        if best is None or acc > best[1]:
            best = (model, acc, f"C={c}")
    model, acc, desc = best
    return model.predict, acc, desc


def linear_probe(
    z_train: np.ndarray,
    y_train: np.ndarray,
    z_val: np.ndarray,
    y_val: np.ndarray,
    z_eval: EvalSets,
    settings: LinearProbeSettings | None = None,
) -> list[dict[str, Any]]:
    """Multi-class linear probe on frozen latents.

    z_*: (N, D) latents; y_*: (N,) class labels (ints or strings); z_eval: split name ->
    (z (N, D), y (N,)). Features are standardised with statistics of train only; the
    hyper-parameter (weight decay or C) is chosen by validation accuracy; the model
    trained on train with it then scores each eval split.

    Returns one dict per eval split: split, accuracy, balanced_accuracy, n, ci_low,
    ci_high (95% bootstrap interval of the accuracy over the split's rows, see
    :mod:`mmssl.evaluate.uncertainty`), val_accuracy, hyperparameter.
    """
    s = settings or LinearProbeSettings()
    _check_all(z_train, y_train, z_val, y_val, z_eval)
    enc = LabelEncoder().fit(np.asarray(y_train))
    for name, y in [("val", y_val)] + [(k, v[1]) for k, v in z_eval.items()]:
        unseen = sorted(set(np.unique(y).tolist()) - set(enc.classes_.tolist()))
        if unseen:
            raise ValueError(f"split {name!r} has labels {unseen} never seen in train (train classes: {enc.classes_.tolist()})")
    if len(enc.classes_) < 2:
        raise ValueError(f"train has a single class: counts {_class_counts(np.asarray(y_train))}")
    scaler = StandardScaler().fit(z_train)
    xtr, xva = scaler.transform(z_train), scaler.transform(z_val)
    ytr, yva = enc.transform(y_train), enc.transform(y_val)
    with _single_thread():
        if s.kind == "linear":
            predict, val_acc, desc = _fit_linear_kind(xtr, ytr, xva, yva, len(enc.classes_), s)
        else:
            predict, val_acc, desc = _fit_logreg_kind(xtr, ytr, xva, yva, s)
    rows = []
    for name, (z, y) in z_eval.items():
        y_true, y_pred = enc.transform(y), predict(scaler.transform(z))
        with warnings.catch_warnings():
            # a split missing some classes makes balanced accuracy warn; the number is still right
            warnings.simplefilter("ignore", UserWarning)
            bal = balanced_accuracy_score(y_true, y_pred)
        low, high = bootstrap_ci(y_true, y_pred, "accuracy")
        rows.append(
            {
                "split": name,
                "accuracy": float(accuracy_score(y_true, y_pred)),
                "balanced_accuracy": float(bal),
                "n": int(len(y_true)),
                "ci_low": low,
                "ci_high": high,
                "val_accuracy": float(val_acc),
                "hyperparameter": f"{s.kind}:{desc}",
            }
        )
    return rows


# ---------------------------------------------------------------- binary tuned probe


def _check_binary(name: str, y: np.ndarray) -> np.ndarray:
    """y (N,) must hold 0/1 (1 = positive) and both classes; returns it as int."""
    y = np.asarray(y)
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"split {name!r}: binary probe labels must be 0/1 (1 = positive); got {sorted(values, key=str)}")
    if len(values) < 2:
        raise ValueError(f"split {name!r} has only one class, ROC AUC is undefined: counts {_class_counts(y)}")
    return y.astype(int)


def refit_tuned(z_train: np.ndarray, y_train: np.ndarray, C: float, l1_ratio: float,
                settings: TunedProbeSettings) -> tuple[StandardScaler, LogisticRegression]:
    """The tuned probe's final model for its chosen (C, l1_ratio): a StandardScaler fitted
    on z_train (N, D) and the saga elastic-net refit on the standardised z_train with the
    0/1 labels y_train (N,). The one code path for the probe and for whatever must
    reproduce its decision exactly (the brain maps' attribution)."""
    scaler = StandardScaler().fit(z_train)
    with _single_thread():
        model = _fit_quiet(_elasticnet(C, l1_ratio, settings), scaler.transform(z_train), y_train)
    return scaler, model


def _elasticnet(C: float, l1_ratio: float, s: TunedProbeSettings) -> LogisticRegression:
    """saga elastic-net logistic regression with balanced class weights (authors' code)."""
    kwargs: dict[str, Any] = dict(
        C=C, l1_ratio=l1_ratio, solver="saga", class_weight="balanced", max_iter=s.max_iter, random_state=s.seed
    )
    # sklearn >= 1.8 deprecates `penalty` (l1_ratio alone selects elastic net); older
    # releases ignore l1_ratio unless penalty="elasticnet" is passed
    if inspect.signature(LogisticRegression).parameters["penalty"].default != "deprecated":
        kwargs["penalty"] = "elasticnet"
    return LogisticRegression(**kwargs)


def _fit_quiet(model: LogisticRegression, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    # max_iter=200 with saga often stops before convergence on purpose (it is the
    # authors' setting and acts as early stopping); hundreds of identical warnings
    # per study would bury every other log line
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(x, y)


def _fingerprint(s: TunedProbeSettings, arrays: list[np.ndarray]) -> str:
    """Hash of the search settings (n_trials excluded) and the tuning data: a study is
    resumed only when both are unchanged, so retrained latents start a fresh study."""
    h = hashlib.sha1(json.dumps({k: v for k, v in asdict(s).items() if k != "n_trials"}, sort_keys=True).encode())
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:12]


def _run_study(
    xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray, s: TunedProbeSettings, storage: str | None, name: str
) -> optuna.Study:
    """Create or resume study ``name`` and run the trials missing to reach s.n_trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one INFO line per trial otherwise
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize", load_if_exists=True)
    done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    # the sampler is seeded with the number of finished trials: a resumed study does not
    # replay the random start-up draws it already made, and stays deterministic
    study.sampler = optuna.samplers.TPESampler(seed=s.seed + done)

    def objective(trial: optuna.Trial) -> float:
        c = trial.suggest_float("C", s.C_min, s.C_max, log=True)
        l1 = trial.suggest_float("l1_ratio", 0.0, 1.0)
        model = _fit_quiet(_elasticnet(c, l1, s), xtr, ytr)
        return float(roc_auc_score(yva, model.predict_proba(xva)[:, 1]))

    if s.n_trials > done:
        progress = Progress(f"probe {name}: trial", s.n_trials, log, every=max(1, s.n_trials // 10), start=done)

        def report(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            finished = sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
            progress.step(finished, f"best validation ROC AUC {study.best_value:.3f}")

        study.optimize(objective, n_trials=s.n_trials - done, callbacks=[report])
    return study


def tuned_logistic_probe(
    z_train: np.ndarray,
    y_train: np.ndarray,
    z_val: np.ndarray,
    y_val: np.ndarray,
    z_eval: EvalSets,
    settings: TunedProbeSettings | None = None,
    storage: str | None = None,
    study_prefix: str = "probe",
) -> list[dict[str, Any]]:
    """Binary elastic-net logistic probe tuned by Optuna for validation ROC AUC.

    z_*: (N, D) latents; y_*: (N,) 0/1 labels, 1 = positive (e.g. AD); z_eval: split
    name -> (z, y). storage: Optuna storage URL (``sqlite:///path/study.db``) or None for
    in-memory; with a URL, a rerun resumes the study and runs only the trials missing
    to reach ``settings.n_trials``. The best (C, l1_ratio) is refit on train.

    Returns one dict per eval split: split, roc_auc, balanced_accuracy, brier, n, ci_low,
    ci_high (95% bootstrap interval of the ROC AUC over the split's rows, resamples with
    one class skipped; see :mod:`mmssl.evaluate.uncertainty`), C, l1_ratio, val_roc_auc.
    """
    s = settings or TunedProbeSettings()
    _check_all(z_train, y_train, z_val, y_val, z_eval)
    ytr, yva = _check_binary("train", y_train), _check_binary("val", y_val)
    y_eval = {name: _check_binary(name, y) for name, (_, y) in z_eval.items()}
    scaler = StandardScaler().fit(z_train)
    xtr, xva = scaler.transform(z_train), scaler.transform(z_val)
    name = f"{study_prefix}-{_fingerprint(s, [np.asarray(z_train), ytr, np.asarray(z_val), yva])}"
    with _single_thread():
        study = _run_study(xtr, ytr, xva, yva, s, storage, name)
        best = study.best_trial
    scaler, model = refit_tuned(z_train, ytr, best.params["C"], best.params["l1_ratio"], s)
    rows = []
    for split, (z, _) in z_eval.items():
        y = y_eval[split]
        x = scaler.transform(z)
        prob = model.predict_proba(x)[:, 1]
        low, high = bootstrap_ci(y, prob, "roc_auc")
        rows.append(
            {
                "split": split,
                "roc_auc": float(roc_auc_score(y, prob)),
                "balanced_accuracy": float(balanced_accuracy_score(y, model.predict(x))),
                "brier": float(brier_score_loss(y, prob)),
                "n": int(len(y)),
                "ci_low": low,
                "ci_high": high,
                "C": float(best.params["C"]),
                "l1_ratio": float(best.params["l1_ratio"]),
                "val_roc_auc": float(best.value),
            }
        )
    return rows
