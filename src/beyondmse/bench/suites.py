"""Runs and suites: what a benchmark executes.

A :class:`RunSpec` is one (dataset, method, params, seed, epochs, protocol); a :class:`Suite`
is a named list of them plus the suite's baseline and any published numbers it reproduces.

Built-in suites (``beyondmse bench --suite NAME``), built at call time from the recipes and
datasets registered here, so a family that is not installed simply drops out:

* ``quick`` -- what ``beyondmse demo`` runs: the embedded ``diamonds`` table (all columns; a
  fixed 10,000-row subsample registered as ``diamonds-10k``, 6,800/1,200/2,000 split), ``ls``,
  ``huber``, the peers ``sk-hgb`` and ``sk-ridge`` and one or two recipes of each method
  family, 3 seeds, at most 10 epochs, batch 256;
* ``bb-tabular`` -- "Beyond Binning" / "Building Bridges" Table 3: ls, huber, ls-softmax,
  hard-bin, soft-bin, hl-gauss, trained-codec, e2e-codec with k in {5, 15, 25}, on the paper's
  numeric-feature variants of every tabular dataset here, plus the three peers;
* ``softstep-synthetic`` -- the SoftStep paper's Figure 3: linear head vs NCA vs NCA+SoftStep
  (and the differentiable-kNN heads) on the generated 2-D surfaces;
* ``tightness-coords`` -- the tightness paper's Table 3 (coordinate prediction on circle,
  torus, swiss roll): baseline, +OE, +PH-Reg, +MT, +ROT, +MT+ROT, 10 seeds, full batch;
* ``all`` -- all of the above.

Ad-hoc suites come from ``--datasets``/``--methods`` lists (:func:`adhoc_suite`) or a TOML
file (:func:`load_suite_file`; YAML too when PyYAML is installed)::

    name = "my-sweep"
    baseline = "ls"
    seeds = 3            # or a list: [0, 1, 2]
    epochs = 20
    datasets = ["diamonds", "wine_quality-num"]
    methods = ["ls", "e2e-codec", "sk-hgb"]
    [params]             # applied to every torch method
    batch_size = 128
    [[grid]]             # optional extra sweeps: each entry is expanded over its lists
    method = "e2e-codec"
    k = [5, 15, 25]
"""

from __future__ import annotations

import hashlib
import itertools
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset
from .store import run_key


# --------------------------------------------------------------------------- runs
@dataclass
class RunSpec:
    """One run: ``run_experiment(dataset, method, seed, epochs=, params=, protocol=)``.

    Parameters
    ----------
    dataset : str or Dataset
        A registered dataset name (loaded in the worker) or a :class:`Dataset` object (shipped
        to the worker; its key includes a fingerprint of its arrays).
    method : str
        A recipe or peer name, with optional ``+reg`` suffixes.
    seed : int
    epochs : int or None
        Epoch cap (None: the recipe's default).
    params : dict
        Trunk, trainer and recipe knobs, exactly as :func:`beyondmse.experiment.run_experiment`
        takes them. Bad knobs make the run fail (recorded as failed), not the suite.
    protocol : str or None
        Split protocol (None: the dataset's default).
    """

    dataset: str | Dataset
    method: str
    seed: int = 0
    epochs: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    protocol: str | None = None

    def __post_init__(self):
        if not isinstance(self.dataset, (str, Dataset)):
            raise ValueError(f"a run's dataset must be a name or a Dataset, got {type(self.dataset).__name__}")
        if not isinstance(self.method, str) or not self.method:
            raise ValueError(f"a run's method must be a non-empty string, got {self.method!r}")
        if self.epochs is not None and int(self.epochs) < 1:
            raise ValueError(f"epochs must be >= 1 or None, got {self.epochs}")
        self.params = dict(self.params or {})

    @property
    def dataset_name(self) -> str:
        return self.dataset if isinstance(self.dataset, str) else self.dataset.name

    @property
    def dataset_id(self) -> str:
        """The name hashed into the key: registered name, or name + array fingerprint."""
        if isinstance(self.dataset, str):
            return self.dataset
        return f"{self.dataset.name}#{dataset_fingerprint(self.dataset)}"

    @property
    def key(self) -> str:
        return run_key(self.dataset_id, self.method, self.params, self.seed, self.epochs, self.protocol)

    def describe(self) -> str:
        extra = "".join(f" {k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.dataset_name} / {self.method}{extra} / seed {self.seed}"


_FINGERPRINTS: dict[int, tuple[weakref.ref, str]] = {}


def dataset_fingerprint(ds: Dataset) -> str:
    """Short sha1 of a Dataset's arrays (and split), so two different in-memory sets never share
    keys. Cached per object (a Dataset is not expected to change once handed to a suite)."""
    cached = _FINGERPRINTS.get(id(ds))
    if cached is not None and cached[0]() is ds:
        return cached[1]
    h = hashlib.sha1()
    for a in (ds.X, ds.y) + ((ds.split,) if ds.split is not None else ()):
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(a.tobytes() if a.dtype != object else str(a.tolist()).encode())
    digest = h.hexdigest()[:12]
    _FINGERPRINTS[id(ds)] = (weakref.ref(ds, lambda _, i=id(ds): _FINGERPRINTS.pop(i, None)), digest)
    return digest


# --------------------------------------------------------------------------- published numbers
@dataclass(frozen=True)
class Published:
    """A number a paper reports for (dataset, method), carried with where it comes from."""

    dataset: str
    method: str
    metric: str
    value: float
    source: str
    note: str = ""


@dataclass
class Suite:
    """A named list of runs with its baseline (the method every other is tested against)."""

    name: str
    summary: str
    runs: list[RunSpec]
    baseline: str = "ls"
    published: list[Published] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why some intended runs are absent

    def __post_init__(self):
        seen, unique = set(), []
        for r in self.runs:  # the same run listed twice is one run
            if r.key not in seen:
                seen.add(r.key)
                unique.append(r)
        self.runs = unique

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.runs]

    def __len__(self) -> int:
        return len(self.runs)


# --------------------------------------------------------------------------- helpers
def _methods_here(wanted: Iterable[str], skipped: list[str]) -> list[str]:
    from ..recipes import parse_method

    out = []
    for m in wanted:
        try:
            parse_method(m)
            out.append(m)
        except ValueError:
            skipped.append(f"method {m!r}: not registered in this installation")
    return out


def _datasets_here(wanted: Iterable[str], skipped: list[str]) -> list[str]:
    from ..data import DATASETS

    out = []
    for d in wanted:
        entry = DATASETS.get(d)
        if entry is None:
            skipped.append(f"dataset {d!r}: not registered")
            continue
        where = entry.where()
        if "not found" in where.lower() or "missing" in where.lower():
            skipped.append(f"dataset {d!r}: {where}")
            continue
        out.append(d)
    return out


def _seeds(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out:
        raise ValueError("the list of seeds is empty")
    return out


def _grid(datasets, methods, seeds, epochs, params_for: Callable[[str], list[dict]], protocol=None):
    return [RunSpec(d, m, s, epochs, p, protocol) for d in datasets for m in methods
            for p in params_for(m) for s in seeds]


def _is_peer(method: str) -> bool:
    from ..recipes import is_peer

    return is_peer(method)


# --------------------------------------------------------------------------- built-in suites
QUICK_METHODS = ("ls", "huber", "sk-hgb", "sk-ridge", "e2e-codec", "hl-gauss", "nca-softstep-i", "mt+rot")
CODEC_METHODS = ("ls-softmax", "hard-bin", "soft-bin", "hl-gauss", "trained-codec", "e2e-codec")
BB_DATASETS = ("diamonds-num", "wine_quality-num", "ailerons-num", "elevators-num", "cpu_act-num",
               "bike_sharing-num")
PEER_METHODS = ("sk-hgb", "sk-knn", "sk-ridge")

TIGHTNESS_SOURCE = ("Zhang et al., 'Improving Deep Regression with Tightness', ICLR 2025, Table 3 "
                    "(test MSE, mean over 10 runs), as quoted in issue 6 of this project")
TIGHTNESS_PUBLISHED = [
    Published("circle", "ls", "mse", 0.154, TIGHTNESS_SOURCE),
    Published("circle", "rot", "mse", 0.010, TIGHTNESS_SOURCE, "paper row '+L_ot'"),
    Published("torus", "ls", "mse", 3.01, TIGHTNESS_SOURCE),
    Published("torus", "rot", "mse", 0.77, TIGHTNESS_SOURCE, "paper row '+L_ot'"),
    Published("coords-mammoth", "ls", "mse", 211.0, TIGHTNESS_SOURCE,
              "paper samples 3,000 points of the full scan; ours come from the 50k-point subsample"),
    Published("coords-mammoth", "rot", "mse", 87.0, TIGHTNESS_SOURCE, "paper row '+L_ot'; see the ls note"),
]

BB_SOURCE = ("Stewart, Bach, Berthet, 'Building Bridges between Regression, Clustering, and Classification' "
             "(arXiv:2502.02996), least-squares MAE on [0, 1]-scaled targets, as quoted in issue 3 of this project")
#: only the least-squares row is carried: the codec rows of the paper's Table 3 were not available here
BB_PUBLISHED = [
    Published("diamonds-num", "ls", "mae", 0.05, BB_SOURCE, "quoted as 'about 0.05'"),
    Published("wine_quality-num", "ls", "mae", 0.097, BB_SOURCE, "paper keeps 7 features, we keep 11"),
    Published("ailerons-num", "ls", "mae", 0.036, BB_SOURCE),
    Published("bike_sharing-num", "ls", "mae", 0.111, BB_SOURCE),
    Published("elevators-num", "ls", "mae", 0.029, BB_SOURCE),
    Published("cpu_act-num", "ls", "mae", 0.059, BB_SOURCE),
]


QUICK_ROWS = 10_000  # diamonds-10k: see beyondmse.data.builtin
QUICK_DATASET = "diamonds-10k"
# quick settings, not the papers': bigger batches and a cheaper ROT plan keep the demo in minutes
QUICK_PARAMS = {"batch_size": 256}
QUICK_METHOD_PARAMS = {"mt+rot": {"rot_max_points": 128}}


def quick_suite(seeds: int | Sequence[int] = 3, epochs: int | None = 10) -> Suite:
    """The demo suite: embedded diamonds (all columns, a fixed 10k-row subsample so that every
    family fits in about two minutes on 2 cores), the baselines, two peers, one or two recipes
    of each installed family, 3 seeds, at most 10 epochs, batch 256."""
    skipped: list[str] = []
    methods = _methods_here(QUICK_METHODS, skipped)

    def params_for(m):
        return [{} if _is_peer(m) else {**QUICK_PARAMS, **QUICK_METHOD_PARAMS.get(m, {})}]

    runs = _grid([QUICK_DATASET], methods, _seeds(seeds), epochs, params_for)
    runs.sort(key=lambda r: r.seed)  # seed-major: the slow recipes spread over the workers
    return Suite("quick", f"embedded diamonds (all columns, {QUICK_ROWS:,}-row subsample), baselines + peers + "
                 "a few recipes per family, batch 256, at most "
                 f"{epochs} epochs", runs, baseline="ls", skipped=skipped)


def bb_tabular_suite(seeds: int | Sequence[int] = 3, epochs: int | None = None) -> Suite:
    skipped: list[str] = []
    datasets = _datasets_here(BB_DATASETS, skipped)
    methods = _methods_here(("ls", "huber") + CODEC_METHODS + PEER_METHODS, skipped)

    def params_for(m):
        return [{"k": k} for k in (5, 15, 25)] if m in CODEC_METHODS else [{}]

    runs = _grid(datasets, methods, _seeds(seeds), epochs, params_for, protocol="paper")
    return Suite("bb-tabular", "regression as classification, paper Table 3: every codec method at "
                 "k = 5, 15, 25 on the numeric-feature tabular sets (paper split sizes), plus peers",
                 runs, baseline="ls", skipped=skipped,
                 published=[p for p in BB_PUBLISHED if p.dataset in datasets])


#: the neighbor heads' settings of benchmarks/softstep_synthetic.py: at the recipes' defaults
#: (batch 32, fixed L2 scale 1) the in-batch neighbor set is too sparse and the softmax too
#: flat to resolve the spiral; ``ls`` keeps batch 32, its best batch there
SYNTHETIC_NEIGHBOR_PARAMS = {"batch_size": 256, "learn_scale": True, "l2_scale": 30.0}


def softstep_synthetic_suite(seeds: int | Sequence[int] = 3, epochs: int | None = None) -> Suite:
    from ..data import DATASETS

    skipped: list[str] = []
    datasets = sorted(n for n, e in DATASETS.items()
                      if getattr(e.load, "__module__", "").endswith("data.synthetic"))
    if not datasets:
        skipped.append("datasets: no generated 2-D surfaces registered (beyondmse.data.synthetic missing)")
    methods = _methods_here(("ls", "nca", "nca-softstep-g", "nca-softstep-i", "dknn-softstep-g",
                             "dknn-softstep-i", "sk-knn"), skipped)
    def params_for(m):
        return [{} if m == "ls" or _is_peer(m) else dict(SYNTHETIC_NEIGHBOR_PARAMS)]

    runs = _grid(datasets, methods, _seeds(seeds), epochs, params_for)
    return Suite("softstep-synthetic", "SoftStep paper Figure 3: linear vs NCA vs NCA+SoftStep on "
                 "nonlinear 2-D surfaces (neighbor heads at batch 256 with a learnable L2 scale)",
                 runs, baseline="ls", skipped=skipped)


# the tightness paper's set-up, as in benchmarks/coords_table.py (AdamW at its default decay 0.01)
COORD_PARAMS = {"hidden": 100, "depth": 2, "dropout": 0.0, "optimizer": "adamw", "lr": 1e-3,
                "weight_decay": 0.01, "batch_size": None, "eval_every": 100, "patience": None}

#: ROT (weight, gamma) per coordinate task, chosen on the validation split only (2 runs of
#: 2000 epochs over weight {1, 10, 100} x gamma {0.1, 0.03, 0.01}; mammoth weights x100,
#: its targets being in units of hundreds); swiss_roll was not swept and takes circle's
COORD_ROT = {"circle": (1.0, 0.03), "torus": (10.0, 0.01), "mammoth": (100.0, 0.01), "swiss_roll": (1.0, 0.03)}


def coord_knobs(dataset: str, method: str) -> dict:
    """Regularizer knobs of ``method`` on a coordinate task (``circle``, ``coords-torus``, ...):
    OE 0.1 and PH-Reg's lambda_t 100 (10,000 on mammoth) / lambda_d 1, as in PH-Reg's released
    script, and the validated ROT settings of :data:`COORD_ROT`."""
    manifold = dataset.removeprefix("coords-")
    knobs: dict = {}
    if "oe" in method.split("+"):
        knobs["oe_weight"] = 0.1
    if "ph-reg" in method.split("+"):
        knobs.update(ph_reg_weight=1.0, ph_reg_topo_weight=10000.0 if manifold == "mammoth" else 100.0,
                     ph_reg_dim_weight=1.0)
    if "rot" in method.split("+"):
        weight, gamma = COORD_ROT.get(manifold, COORD_ROT["circle"])
        knobs.update(rot_weight=weight, rot_gamma=gamma)
    return knobs


def tightness_coords_suite(seeds: int | Sequence[int] = 10, epochs: int | None = 10000) -> Suite:
    skipped: list[str] = []
    datasets = _datasets_here(("circle", "torus", "swiss_roll", "coords-mammoth"), skipped)
    methods = _methods_here(("ls", "oe", "ph-reg", "mt", "rot", "mt+rot"), skipped)
    published = [p for p in TIGHTNESS_PUBLISHED if p.dataset in datasets and p.method in methods]
    runs = [RunSpec(d, m, s, epochs, {} if _is_peer(m) else {**COORD_PARAMS, **coord_knobs(d, m)}, "predefined")
            for d in datasets for m in methods for s in _seeds(seeds)]
    return Suite("tightness-coords", "tightness paper Table 3: 3-D coordinates from 100-D input "
                 "(100/100/2800), MLP 100-100, AdamW full batch, best of validation every 100 epochs",
                 runs, baseline="ls", published=published, skipped=skipped)


SUITES: dict[str, Callable[..., Suite]] = {
    "quick": quick_suite,
    "bb-tabular": bb_tabular_suite,
    "softstep-synthetic": softstep_synthetic_suite,
    "tightness-coords": tightness_coords_suite,
}


def get_suite(name: str, seeds: int | Sequence[int] | None = None, epochs: int | None = None) -> Suite:
    """A built-in suite by name (``seeds``/``epochs`` override its defaults), ``all``, or a TOML path."""
    if name == "all":
        parts = [get_suite(n, seeds, epochs) for n in SUITES]
        return Suite("all", "every built-in suite", [r for p in parts for r in p.runs], baseline="ls",
                     published=[x for p in parts for x in p.published],
                     skipped=[s for p in parts for s in p.skipped])
    if name in SUITES:
        kwargs = {}
        if seeds is not None:
            kwargs["seeds"] = seeds
        if epochs is not None:
            kwargs["epochs"] = epochs
        return SUITES[name](**kwargs)
    if name.endswith((".toml", ".yaml", ".yml")) or Path(name).is_file():
        return load_suite_file(name, seeds=seeds, epochs=epochs)
    raise ValueError(f"unknown suite {name!r}; built-in: {', '.join(list(SUITES) + ['all'])} "
                     "(or a .toml suite file)")


def adhoc_suite(datasets: Sequence[str | Dataset], methods: Sequence[str], seeds: int | Sequence[int] = 3,
                epochs: int | None = None, params: Mapping[str, Any] | None = None,
                protocol: str | None = None, baseline: str | None = None, name: str = "adhoc") -> Suite:
    """Every method on every dataset over ``seeds``; ``params`` go to the torch methods only.

    Unknown method names raise ValueError here (before anything runs); bad knobs fail per run.
    """
    if not datasets or not methods:
        raise ValueError("an ad-hoc suite needs at least one dataset and one method")
    from ..recipes import parse_method

    for m in methods:
        parse_method(m)
    params = dict(params or {})
    runs = _grid(datasets, methods, _seeds(seeds), epochs,
                 lambda m: [{} if _is_peer(m) else dict(params)], protocol)
    if baseline is None:
        baseline = "ls" if "ls" in methods else methods[0]
    return Suite(name, f"ad hoc: {len(datasets)} dataset(s) x {len(methods)} method(s)", runs, baseline=baseline)


def _expand(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``{"k": [5, 15], "lr": 1e-3}`` -> ``[{"k": 5, "lr": 1e-3}, {"k": 15, "lr": 1e-3}]``."""
    keys = list(entry)
    values = [v if isinstance(v, list) else [v] for v in entry.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def load_suite_file(path: str | Path, seeds: int | Sequence[int] | None = None,
                    epochs: int | None = None) -> Suite:
    """Read a suite from TOML (or YAML, with PyYAML installed); see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"suite file {str(path)!r} not found")
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ValueError("YAML suite files need PyYAML (pip install pyyaml); or write the suite as TOML") from None
        spec = yaml.safe_load(path.read_text())
    else:
        import tomllib

        try:
            spec = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as err:
            raise ValueError(f"{path}: {err}") from None
    if not isinstance(spec, dict):
        raise ValueError(f"{path}: expected a table at top level")
    known = {"name", "summary", "baseline", "seeds", "epochs", "datasets", "methods", "params", "protocol",
             "grid", "published"}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    datasets = list(spec.get("datasets", []))
    if not datasets:
        raise ValueError(f"{path}: 'datasets' is missing or empty")
    seed_list = _seeds(seeds if seeds is not None else spec.get("seeds", 3))
    ep = epochs if epochs is not None else spec.get("epochs")
    protocol = spec.get("protocol")
    base_params = dict(spec.get("params", {}))
    methods = list(spec.get("methods", []))
    from ..recipes import parse_method

    runs: list[RunSpec] = []
    for m in methods:
        parse_method(m)
        runs += _grid(datasets, [m], seed_list, ep, lambda m: [{} if _is_peer(m) else dict(base_params)], protocol)
    for entry in spec.get("grid", []):
        entry = dict(entry)
        if "method" not in entry:
            raise ValueError(f"{path}: every [[grid]] entry needs a 'method'")
        for m in (entry.pop("method") if isinstance(entry.get("method"), list) else [entry.pop("method")]):
            parse_method(m)
            for combo in _expand(entry):
                p = {**({} if _is_peer(m) else base_params), **combo}
                runs += [RunSpec(d, m, s, ep, p, protocol) for d in datasets for s in seed_list]
    if not runs:
        raise ValueError(f"{path}: no 'methods' and no [[grid]] entries")
    published = [Published(**p) for p in spec.get("published", [])]
    name = spec.get("name", path.stem)
    baseline = spec.get("baseline") or ("ls" if "ls" in methods else runs[0].method)
    return Suite(name, spec.get("summary", f"suite file {path.name}"), runs, baseline=baseline, published=published)
