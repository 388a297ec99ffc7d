"""Intervention hooks set exactly the chosen residual entries and nothing else."""

from __future__ import annotations

import pytest
import torch

from mi_massive.core.hooks.intervention import (EntryEdit, control_dims, entry_edit, layer_hooks, position_class,
                                           set_entries)
from mi_massive.core.engine import run_capture
from mi_massive.errors import MiMassiveError


def test_set_entries_changes_only_chosen_entries():
    x = torch.randn(2, 5, 8)
    edit = EntryEdit.from_entries([(0, 0, 3, 0.0), (1, 4, 7, 123.5), (1, 2, 0, -2.0)])
    y = set_entries(x, edit)
    assert y[0, 0, 3] == 0.0 and y[1, 4, 7] == 123.5 and y[1, 2, 0] == -2.0
    changed = torch.ones_like(x, dtype=torch.bool)
    changed[0, 0, 3] = changed[1, 4, 7] = changed[1, 2, 0] = False
    assert torch.equal(y[changed], x[changed])
    assert not torch.equal(x, y) and x[1, 4, 7] != 123.5  # input untouched


def test_set_entries_rejects_out_of_range_and_empty_is_identity():
    x = torch.randn(1, 3, 4)
    with pytest.raises(MiMassiveError, match="outside the hooked tensor"):
        set_entries(x, EntryEdit.from_entries([(0, 3, 0, 1.0)]))
    assert torch.equal(set_entries(x, EntryEdit.empty()), x)


def test_entry_edit_modes():
    means = {("start", 5): 10.0, ("other", 5): -3.0}
    e = entry_edit([(0, 0), (1, 7)], [5], mode="mean", means=means)
    assert e.values.tolist() == [10.0, -3.0] and e.positions.tolist() == [0, 7]
    z = entry_edit([(0, 0), (1, 7)], [5, 6], mode="zero")
    assert len(z) == 4 and z.values.abs().sum() == 0
    with pytest.raises(MiMassiveError, match="no calibration mean for position class 'other', dim 6"):
        entry_edit([(0, 3)], [6], mode="mean", means=means)
    assert position_class(0) == "start" and position_class(9) == "other"
    with pytest.raises(MiMassiveError, match="unknown intervention mode 'x'"):
        entry_edit([(0, 0)], [5], mode="x")
    with pytest.raises(MiMassiveError, match="equal lengths"):
        EntryEdit(torch.zeros(2, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                  torch.zeros(1, dtype=torch.long), torch.zeros(1))


def test_control_dims_are_ordinary_and_deterministic():
    a = control_dims(64, exclude=[1, 2, 3], n=5, seed=7)
    assert a == control_dims(64, exclude=[1, 2, 3], n=5, seed=7)
    assert len(set(a)) == 5 and not set(a) & {1, 2, 3}
    with pytest.raises(MiMassiveError, match="cannot draw 2 control dims from 1"):
        control_dims(4, exclude=[0, 1, 2], n=2, seed=0)


def test_hook_in_model_sets_exactly_the_entries(toy_llama):
    ids = torch.tensor([[0, 70, 71, 72, 73], [0, 80, 81, 82, 83]])
    names = ["blocks.1.hook_resid_post", "blocks.2.hook_resid_post"]
    _, clean = run_capture(toy_llama, ids, names, route="bridge")  # same route as the hooked run: bit-identical
    edit = EntryEdit.from_entries([(0, 0, 5, 0.0), (1, 3, 9, 42.0)])
    _, hit = run_capture(toy_llama, ids, names, fwd_hooks=layer_hooks({1: edit}))
    h, c = hit["blocks.1.hook_resid_post"], clean["blocks.1.hook_resid_post"]
    assert h[0, 0, 5] == 0.0 and h[1, 3, 9] == 42.0
    keep = torch.ones_like(h, dtype=torch.bool)
    keep[0, 0, 5] = keep[1, 3, 9] = False
    assert torch.equal(h[keep], c[keep])
    # the edit reaches the next block (the hook's return value is used downstream)
    assert not torch.allclose(hit["blocks.2.hook_resid_post"], clean["blocks.2.hook_resid_post"])
