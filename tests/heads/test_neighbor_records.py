"""Every neighbor run record says how many neighbors its head keeps, in training and at
inference, and what sparsity it learned (issue 14); the report plots both."""

import math
from dataclasses import replace

import pytest

from beyondmse import experiment
from beyondmse.data import load_dataset, make_splits
from beyondmse.plots.neighbors import report_figures
from beyondmse.recipes import methods_in_family

#: what each recipe's head learns about its sparsity, as named in the record's ``head`` entry
LEARNED = {"nca-softstep-g": ("softstep_l0", "softstep_u0", "softstep_t"),
           "nca-softstep-i": ("softstep_l0", "softstep_u0", "softstep_t"),
           "dknn-softstep-g": ("k_frac",), "dknn-softstep-i": ("k_frac",)}


@pytest.fixture(scope="module")
def records():
    full = make_splits(load_dataset("wine_quality-num"), 0, "paper")
    cut = {"train": 600, "val": 150, "test": 150}  # a slice of the real table keeps it to seconds
    splits = replace(full, **{f"{a}_{part}": getattr(full, f"{a}_{part}")[:n] for part, n in cut.items()
                              for a in ("X", "y")}, **{f"{part}_index": getattr(full, f"{part}_index")[:n]
                                                       for part, n in cut.items()})
    params = {"hidden": 16, "depth": 1, "embedding_dim": 8, "batch_size": 64}
    with pytest.MonkeyPatch.context() as mp:  # the distribution metrics (most of the time) are not tested here
        mp.setattr(experiment, "_distribution_scores", lambda *args, **kwargs: {})
        return {m: experiment.run_experiment("wine_quality-num", m, 0, epochs=1, params=params, splits=splits)
                for m in methods_in_family("neighbors")}


def test_every_neighbor_record_has_kept_fractions_and_learned_parameters(records):
    assert set(LEARNED) <= set(records)  # the family still has these recipes
    for method, rec in records.items():
        head = rec.get("head")
        assert head, method
        # batches of 64: 63 neighbors; inference: the memory bank (the training split less the
        # memory rows that diagnostics takes as queries)
        assert head["neighbors_train"] == 63 and head["neighbors_infer"] >= rec["sizes"][0] / 2, (method, head)
        for key in ("kept_frac_train", "kept_frac_infer"):
            assert 0 < head[key] <= 1, (method, key, head)
        for key in LEARNED.get(method, ()):
            assert 0 < head[key] < 1 and math.isfinite(head[key]), (method, key, head)
        if method in LEARNED:  # a learned sparsity: the two modes keep comparable fractions
            ratio = head["kept_frac_infer"] / head["kept_frac_train"]
            assert 1 / 1.5 < ratio < 1.5, (method, head)


def test_report_plots_the_records_kept_fractions_and_learned_maps(records, tmp_path):
    paths = report_figures(list(records.values()), tmp_path)
    assert sorted(p.name for p in paths) == ["neighbors_kept_fraction.png", "softstep_curves.png"]
    assert all(p.stat().st_size > 1000 for p in paths)
