"""core/targets.py: one notation for heads, layers and neurons (CLI and API)."""

import numpy as np
import pytest
import torch

import mi_massive as mm
from mi_massive.core.hooks import ablate_heads, ablate_neurons, check_heads, check_layers, check_neurons
from mi_massive.core.targets import parse_heads, parse_index_list, parse_layers, parse_neurons
from mi_massive.errors import MiMassiveError


@pytest.mark.parametrize("value", [[(18, 8)], (18, 8), "L18H8", "18.8", "18:8", "l18h8", ["L18H8"], [[18, 8]],
                                   ("18.8", "L18H8"), [(np.int64(18), torch.tensor(8))]])
def test_parse_heads_forms(value):
    assert parse_heads(value) == [(18, 8)]


def test_parse_heads_sorted_unique_and_mixed():
    assert parse_heads("L18H8,L3H1") == [(3, 1), (18, 8)]
    assert parse_heads(["L18H8, 3.1", (3, 1), "0:0"]) == [(0, 0), (3, 1), (18, 8)]
    assert parse_heads("5.1, L6H2") == [(5, 1), (6, 2)]


@pytest.mark.parametrize("value,match", [("5-1", "cannot read head '5-1'"), ("L5", "cannot read head"),
                                         ([18, 8], "cannot read head 18"), (5, "cannot read heads 5"),
                                         ([(1, 2, 3)], "cannot read head"), ("", "empty head set"),
                                         ([], "empty head set")])
def test_parse_heads_errors(value, match):
    with pytest.raises(MiMassiveError, match=match) as err:
        parse_heads(value)
    assert "\n" not in str(err.value)


def test_parse_layers_forms():
    assert parse_layers(5) == [5]
    assert parse_layers("5") == [5]
    assert parse_layers("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_layers(["0-1", 3, "3"]) == [0, 1, 3]
    assert parse_layers(range(2)) == [0, 1]
    assert parse_layers({2: 0, 1: 0}.keys()) == [1, 2]
    assert parse_layers(None) is None
    assert parse_layers([], allow_empty=True) == []


def test_parse_layers_errors_and_cli_messages():
    with pytest.raises(MiMassiveError, match="cannot read layer 'a'"):
        parse_layers("a")
    with pytest.raises(MiMassiveError, match="cannot read layer 2.5"):
        parse_layers([2.5])
    with pytest.raises(MiMassiveError, match="empty layer set"):
        parse_layers([])
    with pytest.raises(MiMassiveError, match="--layers expects integers or ranges like 0-3,7; got '3-1'"):
        parse_index_list("3-1", "--layers")
    with pytest.raises(MiMassiveError, match="--heads is empty"):
        parse_index_list(" , ", "--heads")
    assert parse_index_list(None, "--layers") is None
    assert parse_index_list("5,11", "--layers") == [5, 11]
    from mi_massive.core.cli import parse_index_list as cli_parse
    assert cli_parse is parse_index_list


def test_parse_neurons_forms():
    assert parse_neurons({2: [17, 3, 3]}) == {2: [3, 17]}
    assert parse_neurons({2: 17}) == {2: [17]}
    assert parse_neurons("L2N17,L2N3") == {2: [3, 17]}
    assert parse_neurons("2.17") == {2: [17]}
    assert parse_neurons(["2:17", (0, 4)]) == {0: [4], 2: [17]}
    assert parse_neurons((1, 2)) == {1: [2]}
    assert parse_neurons({1: []}, allow_empty=True) == {1: []}
    for value, match in (("L2H17", "cannot read neuron 'L2H17'"), ({}, "empty neuron set"),
                         ({1: ["x"]}, "cannot read neurons"), ([3], "cannot read neuron 3")):
        with pytest.raises(MiMassiveError, match=match):
            parse_neurons(value)


def test_checks_accept_every_form():
    model = mm.load_toy("toy-llama")
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    assert check_heads(model, "L1H1,L0H0") == {0: [0], 1: [1]}
    assert check_heads(model, (1, 1)) == {1: [1]}
    assert check_layers(model, "0-1") == [0, 1]
    assert check_layers(model, 1) == [1]
    assert check_neurons(model, "L1N3,L1N2") == {1: [2, 3]}
    with pytest.raises(MiMassiveError, match=f"head {n_heads} out of range"):
        check_heads(model, f"L0H{n_heads}")
    with pytest.raises(MiMassiveError, match=f"layer {n_layers} out of range"):
        check_layers(model, str(n_layers))
    with pytest.raises(MiMassiveError, match="empty head set"):
        check_heads(model, [])
    with pytest.raises(MiMassiveError, match="empty neuron set for layer 1"):
        check_neurons(model, {1: []})
    assert [n for n, _ in ablate_heads(model, ["L1H0"])] == ["blocks.1.attn.hook_z"]
    assert [n for n, _ in ablate_neurons(model, "L0N1")] == ["blocks.0.mlp.hook_post"]
