"""The parameter table reaches every surface: each entry's default, range and choices are the
same in the command line, the estimator, the config and the app's form."""
import argparse
import math

import numpy as np
import pytest

from icbpl_app import form, state
from icbpl_core import cli, params
from icbpl_core.config import RunSpec, TrainConfig
from icbpl_core.estimator import ICBPL

CLI = {a.dest: a for a in cli.build_parser()._subparsers._group_actions[0].choices["train"]._actions}


def _outside(p: params.Param) -> list:
    """Values just outside the declared range (and non-finite ones for floats)."""
    out = []
    if p.low is not None:
        out.append(p.low - (1 if p.type is int else abs(p.low) * 0.5 + 1e-9))
    if p.high is not None:
        out.append(p.high + 1)
    if p.type is float:
        out += [math.nan, math.inf]
    return out


def _inside(p: params.Param) -> list:
    return [v for v in (p.low, p.high, p.default) if v is not None]


def test_names_flags_and_aliases_are_unique():
    flags = [f for p in params.on("cli") for f in (p.flag, *p.aliases)]
    assert len(flags) == len(set(flags))
    assert len({p.name for p in params.PARAMS}) == len(params.PARAMS)
    for p in params.PARAMS:
        assert p.help and p.level in params.SURFACES_BY_LEVEL
        assert p.default is None or p.check(p.default) == p.default


@pytest.mark.parametrize("p", params.on("cli"), ids=lambda p: p.name)
def test_each_entry_reaches_the_command_line(p):
    action = CLI[p.name]
    assert p.flag in action.option_strings and set(p.aliases) <= set(action.option_strings)
    assert action.default is None                      # not given: the table's or the recipe's default
    parser = cli.build_parser()
    train = lambda *args: vars(parser.parse_args(["train", *map(str, args)]))  # noqa: E731
    if p.type is bool:
        assert train(p.flag)[p.name] is (not p.default)
        return
    if p.type in (int, float):
        for value in _inside(p):
            assert train(p.flag, value)[p.name] == value
        for value in _outside(p):
            with pytest.raises(SystemExit):
                train(p.flag, value)
    for choice in p.options():
        assert train(p.flag, choice)[p.name] == choice
    if p.options():
        with pytest.raises(SystemExit):
            train(p.flag, "no-such-choice")


@pytest.mark.parametrize("p", params.on("estimator"), ids=lambda p: p.name)
def test_each_entry_reaches_the_estimator(p):
    name = p.estimator_name or p.name
    assert ICBPL().get_params()[name] == p.default
    X = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    for value in _outside(p):
        with pytest.raises(params.ParamError):
            ICBPL(**{"epochs": 1, "n_clusters": 2, name: value}).fit(X)


@pytest.mark.parametrize("p", params.at_level("train"), ids=lambda p: p.name)
def test_each_training_entry_is_checked_by_the_config(p):
    assert getattr(TrainConfig(), p.name) == p.default
    for value in _outside(p):
        with pytest.raises(params.ParamError):
            TrainConfig(**{p.name: value}).validate()


@pytest.mark.parametrize("p", params.on("form"), ids=lambda p: p.name)
def test_each_entry_reaches_the_form(p):
    field = form.field(p.name)
    # training values: a dataset without a recipe, so the table's defaults
    draft = state.Draft({"dataset": "folder"}) if p.level == "train" else state.Draft()
    assert draft[p.name] == p.default
    if field.kind == "number":
        assert field.high == p.high and field.low == (0 if p.optional else p.low)
        assert field.from_widget(field.to_widget(p.default)) == p.default
    if field.kind == "choice":
        assert field.options() == p.options()
    assert field.label.startswith(p.label) and p.help[:20].lower() in field.help.lower()
    spec = RunSpec(**{k: v for k, v in draft.spec().to_dict().items() if k != "train"},
                   train=TrainConfig(**draft.spec().train.to_dict()))
    if p.level == "launch":     # how the run is started, not part of it
        assert not hasattr(spec, p.name) and not hasattr(spec.train, p.name)
        return
    assert (getattr(spec.train, p.name) if p.level == "train" else getattr(spec, p.name)) == p.default


def test_the_reproduce_command_parses_back_to_every_setting():
    spec = RunSpec(dataset="digits", limit=300, n_views=2, average_views=False,
                   train=TrainConfig(n_clusters=7, lr=3e-4, w_mmd=12.5, seed=9)).resolved()
    command = cli.command_line(spec.to_dict(), "runs", threads=1)
    assert command.startswith("OMP_NUM_THREADS=1 icbpl train ")
    args = cli.build_parser().parse_args(command.split()[2:])
    assert cli.spec_from_args(args).resolved() == spec


def test_the_cli_and_the_app_name_a_setting_their_own_way():
    error = params.ParamError("n_clusters", "must be between 2 and 1000, got 5000")
    assert cli.hint(error) == "--n-clusters must be between 2 and 1000, got 5000"
    assert state.message(error) == "Number of clusters K: must be between 2 and 1000, got 5000."
    from icbpl_core.errors import CacheError
    cache = CacheError("the feature cache cannot be used: /x is not a folder (cache folder /x)")
    assert "--cache-dir" in cli.hint(cache)
    assert "--cache-dir" not in state.message(cache) and "ICBPL_CACHE_DIR" in state.message(cache)


def test_argparse_types_name_their_problem():
    with pytest.raises(argparse.ArgumentTypeError, match="must be between 1 and 5000, got 0"):
        cli._parse_as(params.param("epochs"))("0")
