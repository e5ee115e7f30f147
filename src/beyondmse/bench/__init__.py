"""The benchmark harness: suites of runs, a resumable SQLite results store, local and Ray
executors, statistics over seeds, reports with figures, and validation-only tuning.

>>> from beyondmse.bench import get_suite, ResultStore, run_suite, write_report
>>> suite = get_suite("quick")                                   # doctest: +SKIP
>>> run_suite(suite, ResultStore("results.sqlite"), jobs=2)      # doctest: +SKIP
>>> write_report("results.sqlite", "report/")                    # doctest: +SKIP
"""

from .report import write_report
from .runner import EXECUTORS, ExecutorUnavailable, SuiteResult, execute_run, pending_runs, run_suite
from .stats import aggregate, compare_to_baseline, method_labels, paired_test
from .store import ResultStore, run_key
from .suites import SUITES, Published, RunSpec, Suite, adhoc_suite, get_suite, load_suite_file

__all__ = ["EXECUTORS", "ExecutorUnavailable", "Published", "ResultStore", "RunSpec", "SUITES", "Suite",
           "SuiteResult", "adhoc_suite", "aggregate", "compare_to_baseline", "execute_run", "get_suite",
           "load_suite_file", "method_labels", "paired_test", "pending_runs", "run_key", "run_suite",
           "write_report"]
