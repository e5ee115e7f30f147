"""Runs and suites: what a benchmark executes.

A :class:`RunSpec` is one (dataset, method, params, seed, epochs, protocol); a :class:`Suite`
is a named list of them plus the suite's baseline and any published numbers it reproduces.

Built-in suites are data: one TOML file each in ``beyondmse/bench/suites/`` (``beyondmse bench
--suite NAME``; :func:`builtin_suites` lists them). Each carries its protocol (trunk, trainer
and recipe settings) and the published numbers it reproduces, every number with its source
(paper title and table). ``quick`` is what ``beyondmse demo`` runs; ``bb-tabular``,
``softstep-synthetic`` and ``tightness-coords`` reproduce the papers' tables; ``all`` is every
built-in file that does not set ``in_all = false``. A recipe or dataset a built-in suite names
but this installation lacks is left out and listed in :attr:`Suite.skipped`.

Ad-hoc suites come from ``--datasets``/``--methods`` lists (:func:`adhoc_suite`) or a TOML
file of the same format (:func:`load_suite_file`; YAML too when PyYAML is installed)::

    name = "my-sweep"
    summary = "what it asks, at most {epochs} epochs"   # {epochs} and {seeds} are filled in
    baseline = "ls"
    seeds = 3                    # or a list: [0, 1, 2]
    epochs = 20                  # [epochs_for] sets it per dataset (a task that learns slowly)
    protocol = "paper"           # split protocol; [protocols] sets it per dataset
    datasets = ["diamonds", "wine_quality-num"]
    methods = ["ls", "e2e-codec", "sk-hgb"]
    families = ["neighbors"]     # adds every registered recipe of these families
    [params]                     # every torch method; "none" means None (e.g. batch_size: full batch)
    batch_size = 128
    [[override]]                 # settings of some cells; filters: datasets, methods, families
    methods = ["mt+rot"]         # (without a methods filter it touches torch methods only)
    rot_max_points = 128
    [[grid]]                     # extra runs: each entry is expanded over its lists
    family = "codec"             # or method = "e2e-codec" / ["a", "b"]; optional datasets = [...]
    k = [5, 15, 25]
    [[published]]                # one number ...
    dataset = "diamonds-num"
    method = "ls"
    metric = "mae"
    value = 0.051
    source = "paper title, Table 3"
    [[published]]                # ... or a table of them: [dataset, method, {params}, value, spread]
    source = "paper title, Table 3"
    metric = "mae"
    rows = [["diamonds-num", "e2e-codec", {k = 25}, 0.047, 3.14e-5]]

A run's parameters are ``params``, then every matching ``[[override]]`` in file order, then
its ``[[grid]]`` values. Runs are ordered seed-major, so a suite stopped early has every
method on its first seeds.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data import Dataset
from .store import run_key

#: where the built-in suite files live (package data)
BUILTIN_DIR = Path(__file__).with_name("suites")


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
    tag: str = ""  # a variant of the same settings, e.g. "tuned"; part of the key only when set

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
        key = run_key(self.dataset_id, self.method, self.params, self.seed, self.epochs, self.protocol)
        return run_key(key, self.tag, {}, 0, None, None) if self.tag else key

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
    """A number a paper reports for (dataset, method[, params]), carried with where it comes from.

    ``params`` pins the run it compares with (e.g. ``{"k": 25}`` for a codec at 25 classes);
    ``spread`` is the +- the paper prints next to the mean (None if it prints none).
    """

    dataset: str
    method: str
    metric: str
    value: float
    source: str
    note: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    spread: float | None = None

    def __post_init__(self):
        for name in ("dataset", "method", "metric", "source"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"a published number needs a non-empty {name!r}, got {getattr(self, name)!r}")
        if not isinstance(self.value, (int, float)) or not math.isfinite(self.value):
            raise ValueError(f"published value of {self.dataset}/{self.method} must be a finite number, "
                             f"got {self.value!r}")

    @property
    def label(self) -> str:
        """``method`` plus its pinned params, as the report labels runs (``e2e-codec k=25``)."""
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return self.method + (f" {extra}" if extra else "")

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Does an aggregated report row (:func:`beyondmse.bench.stats.aggregate`) hold our
        runs of this number: same dataset, same base method, and the pinned params as used?"""
        if row.get("dataset") != self.dataset or row.get("base_method", row.get("method")) != self.method:
            return False
        used = {**(row.get("resolved_params") or {}), **(row.get("params") or {})}
        return all(k in used and used[k] == v for k, v in self.params.items())


@dataclass
class Suite:
    """A named list of runs with its baseline (the method every other is tested against)."""

    name: str
    summary: str
    runs: list[RunSpec]
    baseline: str = "ls"
    published: list[Published] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why some intended runs are absent
    match_baseline: bool = True  # add the baseline on each run's trunk/trainer footing (bench.matching)
    tune: int | None = None  # trials per method for `bench` to tune with when --tune is not given

    def __post_init__(self):
        if self.match_baseline:
            from .matching import matched_baseline_runs

            self.runs = list(self.runs) + matched_baseline_runs(self.runs, self.baseline)
        seen, unique = set(), []
        for r in self.runs:  # the same run listed twice is one run
            if r.key not in seen:
                seen.add(r.key)
                unique.append(r)
        self.runs = unique

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.runs]

    def subset(self, datasets: Sequence[str] | None = None, methods: Sequence[str] | None = None) -> Suite:
        """The runs on these datasets and of these methods (None: all), with their published numbers.

        ValueError when a name is not in the suite, so a typo does not silently select nothing.
        """
        for what, wanted, have in (("dataset", datasets, {r.dataset_name for r in self.runs}),
                                   ("method", methods, {r.method for r in self.runs})):
            unknown = sorted(set(wanted or ()) - have)
            if unknown:
                raise ValueError(f"suite {self.name!r} has no {what} {unknown}; it has {sorted(have)}")
        keep = [r for r in self.runs if (datasets is None or r.dataset_name in datasets)
                and (methods is None or r.method in methods)]
        published = [p for p in self.published if (datasets is None or p.dataset in datasets)
                     and (methods is None or p.method in methods)]
        return Suite(self.name, self.summary, keep, baseline=self.baseline, published=published,
                     skipped=list(self.skipped))

    def __len__(self) -> int:
        return len(self.runs)


# --------------------------------------------------------------------------- helpers
def _seeds(seeds: int | Sequence[int]) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise ValueError(f"seeds must be >= 1, got {seeds}")
        return list(range(seeds))
    out = [int(s) for s in seeds]
    if not out:
        raise ValueError("the list of seeds is empty")
    return out


def _is_peer(method: str) -> bool:
    from ..recipes import is_peer

    return is_peer(method)


def _grid(datasets, methods, seeds, epochs, params_for, protocol=None):
    return [RunSpec(d, m, s, epochs, p, protocol) for d in datasets for m in methods
            for p in params_for(m) for s in seeds]


def _none(value: Any) -> Any:
    """TOML has no null: the string ``"none"`` stands for None (full batch, no clipping, ...)."""
    if isinstance(value, str) and value.lower() == "none":
        return None
    if isinstance(value, list):
        return [_none(v) for v in value]
    return value


def _expand(entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``{"k": [5, 15], "lr": 1e-3}`` -> ``[{"k": 5, "lr": 1e-3}, {"k": 15, "lr": 1e-3}]``."""
    keys = list(entry)
    values = [v if isinstance(v, list) else [v] for v in entry.values()]
    return [dict(zip(keys, combo)) for combo in itertools.product(*values)]


def _epochs(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a whole number of epochs >= 1, got {value!r}")
    return value


def _as_list(value: Any, what: str, where: str) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ValueError(f"{where}: {what!r} must be a name or a list of names, got {value!r}")


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


# --------------------------------------------------------------------------- suite files
_KNOWN_KEYS = {"name", "summary", "baseline", "seeds", "epochs", "datasets", "methods", "families", "params",
               "protocol", "protocols", "epochs_for", "override", "grid", "published", "in_all", "targets", "tune"}
_FILTERS = ("datasets", "methods", "families")


def _read_spec(path: Path) -> dict[str, Any]:
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
    unknown = set(spec) - _KNOWN_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown key(s) {sorted(unknown)}; known: {sorted(_KNOWN_KEYS)}")
    return spec


def _published(spec: Mapping[str, Any], where: str) -> list[Published]:
    """The ``[[published]]`` entries: single numbers, or tables of ``rows``."""
    out = []
    for i, entry in enumerate(spec.get("published", [])):
        entry = dict(entry)
        if "rows" not in entry:
            try:
                out.append(Published(**entry))
            except TypeError as err:
                raise ValueError(f"{where}: published entry {i}: {err}") from None
            continue
        rows = entry.pop("rows")
        unknown = set(entry) - {"source", "metric", "note"}
        if unknown or "source" not in entry or "metric" not in entry:
            raise ValueError(f"{where}: published table {i} needs 'source', 'metric' and 'rows' "
                             f"(and optionally 'note'); got {sorted(set(entry) | {'rows'})}")
        for row in rows:
            if not (isinstance(row, list) and len(row) == 5 and isinstance(row[2], dict)):
                raise ValueError(f"{where}: published row {row!r} is not [dataset, method, {{params}}, value, spread]")
            dataset, method, params, value, spread = row
            out.append(Published(dataset, method, entry["metric"], value, entry["source"], entry.get("note", ""),
                                 dict(params), spread))
    return out


class _Methods:
    """Method names of a suite file: checked strictly (user files) or leniently (built-ins)."""

    def __init__(self, strict: bool, skipped: list[str]):
        self.strict, self.skipped = strict, skipped

    def keep(self, names: Iterable[str]) -> list[str]:
        from ..recipes import parse_method

        out = []
        for m in names:
            try:
                parse_method(m)
            except ValueError:
                if self.strict:
                    raise
                self.skipped.append(f"method {m!r}: not registered in this installation")
                continue
            out.append(m)
        return out

    def family(self, names: Iterable[str]) -> list[str]:
        from ..recipes import methods_in_family

        out = []
        for f in names:
            found = methods_in_family(f)
            if not found:
                if self.strict:
                    raise ValueError(f"no registered recipe has family {f!r}")
                self.skipped.append(f"family {f!r}: no recipe registered in this installation")
            out += found
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


def _family_of(method: str) -> str | None:
    from ..recipes import RECIPES, parse_method

    base, _ = parse_method(method)
    return RECIPES[base].family if base in RECIPES else None


def _applies(flt: Mapping[str, Any], dataset: str, method: str) -> bool:
    if "datasets" in flt and dataset not in flt["datasets"]:
        return False
    if "methods" in flt:
        return method in flt["methods"]
    if "families" in flt and _family_of(method) not in flt["families"]:
        return False
    return not _is_peer(method)  # no methods filter: torch methods only


def load_suite_file(path: str | Path, seeds: int | Sequence[int] | None = None,
                    epochs: int | None = None, *, strict: bool = True) -> Suite:
    """Read a suite from TOML (or YAML, with PyYAML installed); see the module docstring.

    With ``strict`` (user files) an unknown method or family is a ValueError; without it
    (built-in suites) such methods and unavailable datasets are left out and listed in
    :attr:`Suite.skipped`, so a family that is not installed simply drops out.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"suite file {str(path)!r} not found")
    spec = _read_spec(path)
    where = str(path)
    skipped: list[str] = []
    datasets = list(spec.get("datasets", []))
    if not datasets:
        raise ValueError(f"{where}: 'datasets' is missing or empty")
    targets = dict(spec.get("targets", {}))
    if not strict:
        datasets = _datasets_here([d for d in datasets if d not in targets], skipped) + \
            [d for d in datasets if d in targets]
    datasets = [_user_file(d, targets[d], path) if d in targets else d for d in datasets]
    seed_list = _seeds(seeds if seeds is not None else spec.get("seeds", 3))
    ep = epochs if epochs is not None else spec.get("epochs")
    epochs_for = {} if epochs is not None else {k: _epochs(v, f"{where}: epochs_for.{k}")
                                                for k, v in dict(spec.get("epochs_for", {})).items()}
    protocol = spec.get("protocol")
    protocols = dict(spec.get("protocols", {}))
    base_params = {k: _none(v) for k, v in dict(spec.get("params", {})).items()}
    overrides = []
    for entry in spec.get("override", []):
        flt = {k: _as_list(entry[k], k, where) for k in _FILTERS if k in entry}
        if not flt:
            raise ValueError(f"{where}: every [[override]] needs a filter ({', '.join(_FILTERS)})")
        overrides.append((flt, {k: _none(v) for k, v in entry.items() if k not in _FILTERS}))
    if spec.get("epochs") is not None and any("max_epochs" in knobs for knobs in
                                              [base_params, *(k for _, k in overrides)]):
        # a run's epochs replace its max_epochs, so the setting would be silently ignored
        raise ValueError(f"{where}: 'max_epochs' in [params] or [[override]] has no effect next to the suite's "
                         f"'epochs'; set a dataset's cap with [epochs_for]")
    names = _Methods(strict, skipped)
    methods = names.keep(_as_list(spec.get("methods"), "methods", where))
    methods += [m for m in names.family(_as_list(spec.get("families"), "families", where)) if m not in methods]

    def params_of(dataset, method: str, combo: Mapping[str, Any] = {}) -> dict[str, Any]:
        dataset = _name(dataset)
        p = {} if _is_peer(method) else dict(base_params)
        for flt, knobs in overrides:
            if _applies(flt, dataset, method):
                p.update(knobs)
        return {**p, **combo}

    cells: list[tuple[str, str, dict]] = [(d, m, params_of(d, m)) for d in datasets for m in methods]
    for entry in spec.get("grid", []):
        entry = dict(entry)
        if ("method" in entry) == ("family" in entry):
            raise ValueError(f"{where}: every [[grid]] entry needs a 'method' or a 'family' (not both)")
        grid_methods = (names.keep(_as_list(entry.pop("method"), "method", where)) if "method" in entry
                        else names.family(_as_list(entry.pop("family"), "family", where)))
        only = _as_list(entry.pop("datasets", None), "datasets", where)
        combos = _expand({k: _none(v) for k, v in entry.items()})
        cells += [(d, m, params_of(d, m, combo)) for d in datasets if not only or _name(d) in only
                  for m in grid_methods for combo in combos]
    runs = [RunSpec(d, m, s, epochs_for.get(_name(d), ep), p, protocols.get(_name(d), protocol))
            for s in seed_list for d, m, p in cells]
    if not runs:
        raise ValueError(f"{where}: no runs ('methods', 'families' and [[grid]] give none here)")
    tune = spec.get("tune")
    if tune is not None and (not isinstance(tune, int) or tune < 1):
        raise ValueError(f"{where}: 'tune' must be a number of trials >= 1, got {tune!r}")
    present = {(r.dataset_name, r.method) for r in runs}
    published = [p for p in _published(spec, where) if (p.dataset, p.method) in present]
    name = spec.get("name", path.stem)
    baseline = spec.get("baseline") or ("ls" if "ls" in methods else runs[0].method)
    summary = str(spec.get("summary", f"suite file {path.name}"))
    summary = summary.replace("{epochs}", str(ep)).replace("{seeds}", str(len(seed_list)))
    return Suite(name, summary, runs, baseline=baseline, published=published, skipped=skipped, tune=tune)


def _name(dataset) -> str:
    return dataset if isinstance(dataset, str) else dataset.name


def _user_file(name: str, target: str | list[str], suite_path: Path):
    """A user's CSV/Parquet/npz named in a suite's ``targets`` table, loaded with its target
    column(s); a relative path is taken from the suite file's folder."""
    from ..data import load_dataset

    path = Path(name)
    if not path.is_absolute():
        path = suite_path.parent / path
    return load_dataset(str(path), target=target)


# --------------------------------------------------------------------------- built-in suites
def builtin_suites() -> dict[str, Path]:
    """Name -> file of every built-in suite (the TOML files shipped in ``bench/suites/``)."""
    return {p.stem: p for p in sorted(BUILTIN_DIR.glob("*.toml"))}


def _in_all(path: Path) -> bool:
    return _read_spec(path).get("in_all", True) is not False


def get_suite(name: str, seeds: int | Sequence[int] | None = None, epochs: int | None = None) -> Suite:
    """A built-in suite by name (``seeds``/``epochs`` override its defaults), ``all``, or a suite file."""
    builtin = builtin_suites()
    if name == "all":
        parts = [get_suite(n, seeds, epochs) for n, p in builtin.items() if _in_all(p)]
        return Suite("all", "every built-in suite", [r for p in parts for r in p.runs], baseline="ls",
                     published=[x for p in parts for x in p.published],
                     skipped=[s for p in parts for s in p.skipped])
    if name in builtin:
        return load_suite_file(builtin[name], seeds=seeds, epochs=epochs, strict=False)
    if name.endswith((".toml", ".yaml", ".yml")) or Path(name).is_file():
        return load_suite_file(name, seeds=seeds, epochs=epochs)
    raise ValueError(f"unknown suite {name!r}; built-in: {', '.join(list(builtin) + ['all'])} "
                     "(or a .toml suite file)")


def published_for(suite_names: Iterable[str | None],
                  records: Iterable[Mapping[str, Any]] | None = None) -> list[Published]:
    """Published numbers of the built-in suites named (``all`` means every one), for a report
    built from a store alone: each stored run remembers the suite it ran in. With ``records``,
    only the numbers some of those runs reproduce (:meth:`Published.matches`)."""
    builtin = builtin_suites()
    names = {n for n in suite_names if n}
    if "all" in names:
        names = {n for n, p in builtin.items() if _in_all(p)}
    out: list[Published] = []
    for n in sorted(names & set(builtin)):
        out += _published(_read_spec(builtin[n]), str(builtin[n]))
    if records is not None:
        records = list(records)
        out = [p for p in out if any(p.matches(r) for r in records)]
    return out


def suite_methods(name: str) -> list[str]:
    """The methods a built-in suite file lists (``methods``, without families or grids):
    what ``beyondmse demo --dataset D`` runs on another dataset."""
    return list(_read_spec(builtin_suites()[name]).get("methods", []))


#: names of the built-in suites (files in :data:`BUILTIN_DIR`)
SUITES: dict[str, Path] = builtin_suites()


#: old constant names -> the suite whose file now holds that data
_MOVED = {"BB_PUBLISHED": "bb-tabular", "TIGHTNESS_PUBLISHED": "tightness-coords"}


def __getattr__(name: str):
    if name == "QUICK_METHODS":  # the demo's method list lives in quick.toml
        return tuple(suite_methods("quick"))
    if name in _MOVED:  # published numbers live in the suite files
        return published_for([_MOVED[name]])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
