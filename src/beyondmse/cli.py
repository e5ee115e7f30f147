"""The ``beyondmse`` command line (see DESIGN.md, "The command line")."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _parse_params(items: list[str] | None) -> dict:
    """``--param key=value`` pairs; values are parsed as JSON when possible (numbers, bools), and
    ``none`` is None as in suite files (``batch_size=none``: full batch; ``patience=none``)."""
    out = {}
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--param expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        if value.strip().lower() == "none":
            out[key] = None
            continue
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


# --------------------------------------------------------------------------- commands
def cmd_datasets(args) -> int:
    from .data import DATASETS, PRESETS

    print(f"{'name':<26}{'size':<32}{'preset':<8}{'where it loads from here'}")
    for name, entry in sorted(DATASETS.items()):
        print(f"{name:<26}{entry.size:<32}{'yes' if name in PRESETS else '':<8}{entry.where()}")
        if args.verbose:
            print(f"{'':<26}{entry.summary}")
            if name in PRESETS:
                print(f"{'':<26}preset: {PRESETS[name].source}")
    print("\npreset: the dataset carries its paper's protocol (trunk, trainer, epochs, per-method knobs), "
          "applied by run and bench unless --protocol default (-v shows its source).")
    print("Also: any CSV/Parquet file (--dataset path --target column) and openml:<id> "
          "(downloaded once into the user cache).")
    return 0


def cmd_run(args) -> int:
    if getattr(args, "nproc", 1) != 1:
        return _run_on_processes(args)
    from .data import load_dataset
    from .experiment import run_experiment

    params = _parse_params(args.param)
    target = args.target.split(",") if args.target and "," in args.target else args.target
    methods = _csv(args.method)
    if not methods:
        raise ValueError("--method needs at least one method name")
    from .recipes import parse_method

    for method in methods:  # every name is checked before anything trains
        parse_method(method)
    text = getattr(args, "text", None)
    ds = load_dataset(args.dataset, target=target, **({"text": _csv(text)} if text else {}))
    records = []
    for method in methods:
        for seed in range(args.seed, args.seed + args.seeds):
            rec = run_experiment(ds, method, seed, epochs=args.epochs, params=params,
                                 protocol=args.protocol, progress=not args.quiet)
            records.append(rec)
            m = rec["metrics"]
            bound = " -- best epoch at the cap" if rec.get("cap_bound") else ""
            print(f"{method} seed {seed}: MAE {m['mae']:.4f}  RMSE {m['rmse']:.4f}  R2 {m['r2']:.4f}  "
                  f"({rec['fit_seconds']:.1f} s, {rec['epochs']} epochs, best {rec.get('best_epoch')}{bound})",
                  flush=True)
        print("  settings: " + _settings_line(records[-1]), flush=True)
    print()
    from .bench.report import text_table
    from .bench.stats import aggregate

    metrics = ("mae", "rmse", "r2")
    print(text_table(aggregate(records, metrics), metrics, records=records))
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        slim = [{k: v for k, v in r.items() if k != "history"} for r in records]
        path.write_text(json.dumps(slim if len(slim) > 1 else slim[0], indent=1))
        print(f"\nwrote {path}")
    return 0


def _run_on_processes(args) -> int:
    """``run --nproc P``: the same run on P processes (torch.distributed's elastic launcher; gloo
    on CPU, nccl on GPU), each training on its part of every global batch; rank 0 prints and
    writes the records (:mod:`beyondmse.distributed`)."""
    import os

    from .distributed import launch
    from .recipes import parse_method

    if args.nproc < 1:
        raise ValueError(f"--nproc must be >= 1, got {args.nproc}")
    for method in _csv(args.method):  # every name is checked before anything starts
        parse_method(method)
    threads = None if os.environ.get("OMP_NUM_THREADS") else max(1, (os.cpu_count() or 1) // args.nproc)
    return launch(_run_rank, (args,), nproc=args.nproc, threads=threads)[0]


def _run_rank(args) -> int:
    """One process of ``run --nproc``: ranks other than 0 train silently and write nothing."""
    import copy
    import os

    from .distributed import is_main_process

    args = copy.copy(args)
    args.nproc = 1
    if not is_main_process():
        args.json, args.quiet = None, True
        sys.stdout = open(os.devnull, "w")
    return cmd_run(args)


def _settings_line(record: dict) -> str:
    """What a run trained with, and what departs from the shared defaults (and why)."""
    cfg = record.get("config") or {}
    if "trunk" not in cfg:
        return ", ".join(f"{k}={v}" for k, v in (record.get("params") or {}).items()) or "defaults"
    trunk = " ".join(f"{k}={v}" for k, v in cfg["trunk"].items())
    trainer = " ".join(f"{k}={v}" for k, v in cfg["trainer"].items())
    over = ", ".join(f"{k} ({src})" for k, src in cfg.get("overrides", {}).items()) or "none"
    preset = f"; dataset preset {cfg['preset']!r}" if cfg.get("preset") else ""
    return f"trunk [{trunk}] trainer [{trainer}]; departs from the shared defaults: {over}{preset}"


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _suite_from_args(args):
    from .bench import adhoc_suite, get_suite

    seeds = args.seeds
    if args.suite:
        if args.param or args.target or args.text:
            raise ValueError("--param, --target and --text apply to ad-hoc suites (--datasets/--methods); "
                             "put them in a suite file")
        suite = get_suite(args.suite, seeds=seeds, epochs=args.epochs)
        if args.datasets or args.methods:  # with --suite they pick some of its runs
            suite = suite.subset(datasets=_csv(args.datasets) or None, methods=_csv(args.methods) or None)
    elif args.datasets and args.methods:
        datasets = _csv(args.datasets)
        if args.target or args.text:  # the user's own files: load them here with their target (and text) columns
            from .data import DATASETS, load_dataset

            target = args.target.split(",") if args.target and "," in args.target else args.target
            extra = {"text": _csv(args.text)} if args.text else {}
            datasets = [d if d in DATASETS else load_dataset(d, target=target, **extra) for d in datasets]
        suite = adhoc_suite(datasets, _csv(args.methods), seeds=seeds if seeds is not None else 3,
                            epochs=args.epochs, params=_parse_params(args.param), protocol=args.protocol,
                            baseline=args.baseline)
    else:
        raise ValueError("bench needs --suite NAME|FILE.toml, or both --datasets and --methods")
    if args.baseline:
        suite.baseline = args.baseline
    return suite


def _bench(suite, store_path, *, jobs, executor, quiet=False, tune=None, retry_failed=True, diagnostics=True,
           ray_address=None):
    from .bench import ResultStore, run_suite

    store = ResultStore(store_path)
    print(f"beyondmse bench: suite {suite.name!r} ({len(suite)} runs) -> {store.path}", flush=True)
    for reason in suite.skipped:
        print(f"  left out: {reason}", flush=True)
    _warn_stale(suite, store)
    if tune:
        from .bench.tune import tune_suite

        suite = tune_suite(suite, tune, store, log=lambda msg: print("  " + msg, flush=True))
    result = run_suite(suite, store, jobs=jobs, executor=executor, progress=not quiet, retry_failed=retry_failed,
                       diagnostics=diagnostics, ray_address=ray_address)
    print(result.line(), flush=True)
    for what, err in result.errors[:20]:
        print(f"  failed: {what}: {err}", flush=True)
    return suite, result


def _warn_stale(suite, store) -> None:
    """Say which stored runs a default has changed under (they are not re-run)."""
    from .bench.runner import stale_runs

    stale = stale_runs(suite, store)
    if not stale:
        return
    changes = sorted({f"{spec.method} {k}: {old!r} -> {new!r}" for spec, diff in stale
                      for k, (old, new) in diff.items()})
    print(f"  warning: {len(stale)} finished run(s) in this store used other defaults than today's "
          f"({'; '.join(changes[:5])}{'; ...' if len(changes) > 5 else ''}). They are kept, not re-run: "
          "use a new --store to run them with today's defaults.", flush=True)


def cmd_bench(args) -> int:
    suite = _suite_from_args(args)
    suite, result = _bench(suite, args.store, jobs=args.jobs, executor=args.executor, quiet=args.quiet,
                           tune=args.tune if args.tune is not None else suite.tune,
                           retry_failed=not args.no_retry_failed,
                           diagnostics=not args.no_diagnostics, ray_address=args.ray_address)
    if args.report:
        from .bench import write_report

        out = write_report(args.store, args.report, suite=suite)
        print(f"wrote {out['report']}")
    return 0 if result.lost == 0 else 1


def cmd_report(args) -> int:
    from .bench import get_suite, write_report

    suite = get_suite(args.suite) if args.suite else None
    out = write_report(args.store, args.out, suite=suite, baseline=args.baseline, family=not args.no_family)
    print(out["text"])
    print(f"wrote {out['report']} and {len(out['figures'])} figure(s) in {Path(args.out)}")
    return 0


def cmd_demo(args) -> int:
    import os
    import time

    from .bench import adhoc_suite, get_suite, write_report
    from .bench.suites import QUICK_METHODS

    start = time.perf_counter()
    if args.dataset == "diamonds":
        suite = get_suite("quick", seeds=args.seeds, epochs=args.epochs)
    else:
        from .recipes import available_methods

        known = set(available_methods())
        methods = [m for m in QUICK_METHODS if parse_method_safe(m) in known]
        suite = adhoc_suite([args.dataset], methods, seeds=args.seeds, epochs=args.epochs, name="demo")
    out = Path(args.out)
    jobs = args.jobs or max(1, min(2, os.cpu_count() or 1))
    _bench(suite, out / "results.sqlite", jobs=jobs, executor="local", quiet=args.quiet)
    rep = write_report(out / "results.sqlite", out, suite=suite, title=f"beyondmse demo: {args.dataset}")
    print()
    print(rep["text"])
    print(f"wrote {rep['report']} and {len(rep['figures'])} figure(s) ({time.perf_counter() - start:.0f} s in all)")
    return 0


def parse_method_safe(name, parse_method=None) -> str | None:
    if parse_method is None:
        from .recipes import parse_method
    try:
        base, _ = parse_method(name)
        return base
    except ValueError:
        return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="beyondmse", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="offline demo: `bench --suite quick` + `report` on the embedded diamonds data")
    d.add_argument("--dataset", default="diamonds")
    d.add_argument("--seeds", type=int, default=3)
    d.add_argument("--epochs", type=int, default=None, help="epoch cap (default: the quick suite's)")
    d.add_argument("--jobs", type=int, default=None, help="parallel runs (default: min(2, cores))")
    d.add_argument("--out", default="beyondmse-demo")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=cmd_demo)

    s = sub.add_parser("datasets", help="list the datasets and where they load from here")
    s.add_argument("-v", "--verbose", action="store_true")
    s.set_defaults(func=cmd_datasets)

    r = sub.add_parser("run", help="train and evaluate one method on one dataset over seeds")
    r.add_argument("--dataset", required=True)
    r.add_argument("--target", default=None,
                   help="target column for a CSV/Parquet file or OpenML; 'a,b' for a 2-D target")
    r.add_argument("--text", default=None,
                   help="text column(s) of a CSV file, 'a,b' joined: TF-IDF -> SVD features fitted on the training split")
    r.add_argument("--method", required=True, help="a method, or several separated by commas (one trunk for all)")
    r.add_argument("--seeds", type=int, default=1)
    r.add_argument("--seed", type=int, default=0, help="first seed")
    r.add_argument("--epochs", type=int, default=None)
    r.add_argument("--protocol", default=None, choices=["paper", "default", "predefined"],
                   help="split protocol; 'default' also turns the dataset's preset off")
    r.add_argument("--param", action="append", help="key=value (trunk, trainer or recipe knob)")
    r.add_argument("--json", default=None)
    r.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    r.add_argument("--nproc", type=int, default=1,
                   help="train each run on this many processes (torch.distributed: gloo on CPU, nccl on GPU); "
                        "the batch losses see the global batch")
    r.set_defaults(func=cmd_run)

    b = sub.add_parser("bench", help="run a suite of runs into a results store (resumable)")
    b.add_argument("--suite", help="quick, bb-tabular, softstep-synthetic, tightness-coords, all, or a .toml file")
    b.add_argument("--datasets", help="comma-separated datasets (ad-hoc suite, with --methods; "
                   "with --suite: only these of its datasets)")
    b.add_argument("--methods", help="comma-separated methods (ad-hoc suite, with --datasets; "
                   "with --suite: only these of its methods)")
    b.add_argument("--target", default=None,
                   help="target column of the CSV/Parquet/npz files named in --datasets ('a,b': 2-D target)")
    b.add_argument("--text", default=None,
                   help="text column(s) of the CSV files named in --datasets, 'a,b' joined: TF-IDF -> SVD features "
                        "fitted on the training split (as run --text)")
    b.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: the suite's; 3 ad hoc)")
    b.add_argument("--epochs", type=int, default=None, help="epoch cap (default: the suite's)")
    b.add_argument("--param", action="append", help="key=value for every torch method of an ad-hoc suite")
    b.add_argument("--protocol", default=None, choices=["paper", "default", "predefined"])
    b.add_argument("--baseline", default=None, help="method the others are tested against (default: ls)")
    b.add_argument("--jobs", type=int, default=1, help="runs in parallel (local processes or Ray tasks)")
    b.add_argument("--executor", default="local", choices=["local", "ray"])
    b.add_argument("--ray-address", default=None, help="Ray cluster address (default: a local Ray instance)")
    b.add_argument("--store", default="results.sqlite", help="SQLite results store (created if missing)")
    b.add_argument("--tune", type=int, default=None, metavar="TRIALS",
                   help="first give every method (peers too) TRIALS trials over its declared search space on the "
                        "validation split (Optuna), then run default and tuned settings on all seeds "
                        "(default: the suite's own 'tune', if any)")
    b.add_argument("--no-retry-failed", action="store_true", help="skip runs recorded as failed too")
    b.add_argument("--no-diagnostics", action="store_true", help="skip ordinality/volume of embeddings")
    b.add_argument("--report", default=None, metavar="DIR", help="also write the report into DIR")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=cmd_bench)

    rp = sub.add_parser("report", help="Markdown report + PNG figures from a results store")
    rp.add_argument("--store", default="results.sqlite")
    rp.add_argument("--out", default="beyondmse-report")
    rp.add_argument("--suite", default=None, help="only this suite's runs (and its published numbers)")
    rp.add_argument("--baseline", default=None)
    rp.add_argument("--no-family", action="store_true", help="skip the family figures")
    rp.set_defaults(func=cmd_report)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .bench.runner import ExecutorUnavailable
    from .bench.tune import TuneUnavailable
    from .distributed import DistributedRunError

    try:
        return args.func(args)
    except (ValueError, ExecutorUnavailable, TuneUnavailable, DistributedRunError) as err:
        print(f"beyondmse: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbeyondmse: interrupted; finished runs are in the store, rerun the same command to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
