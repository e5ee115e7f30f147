"""Figures, one module per method family; opt-in (``import beyondmse`` does not import them).

Each family module defines ``report_figures(records, out_dir) -> list[Path]``: given the stored
run records of that family (as :meth:`beyondmse.bench.ResultStore.rows` returns them) it writes
its PNGs into ``out_dir`` and returns their paths. A recipe names its family's module in
``Recipe.plots``; the report calls the hook of every family present in a store and never
dispatches on a name. matplotlib is imported on first use (:mod:`._mpl`).
"""

__all__: list[str] = []
