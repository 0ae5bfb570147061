"""Params values that pass a type check but are not numbers or not locations: NaN and ±inf in
every float field (the list is generated from the params dataclasses, so a field added later is
covered too), bounded echoes of huge values (a YAML alias bomb), and broken `data.source`."""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Union

import pytest
import yaml

from audioclf.config import Params, load_params, params_from_dict
from audioclf.errors import AudioclfError
from tests.robustness.bad_inputs import cli, one_line_error


def _mentions_float(tp: Any) -> bool:
    if tp is float:
        return True
    if typing.get_origin(tp) in (Union, types.UnionType, list):
        return any(_mentions_float(arg) for arg in typing.get_args(tp))
    return False


def _float_value(tp: Any, value: float) -> Any:
    """`value` shaped for the annotation: inside a list where the field is a list of floats."""
    if typing.get_origin(tp) is list:
        return [value]
    if typing.get_origin(tp) in (Union, types.UnionType) and float not in typing.get_args(tp):
        return next(_float_value(a, value) for a in typing.get_args(tp) if _mentions_float(a))
    return value


def float_fields(cls: type = Params, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """(key path, annotation) of every field of every params dataclass that can hold a float."""
    found = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        nested = [a for a in (tp, *typing.get_args(tp)) if dataclasses.is_dataclass(a)]
        if nested:
            found += float_fields(nested[0], (*prefix, f.name))
        elif _mentions_float(tp):
            found.append(((*prefix, f.name), tp))
    return found


def model_float_fields() -> list[tuple[tuple[str, ...], Any]]:
    """The same for each architecture's own params (`train.model_params.<name>`), where the
    project has a models registry."""
    try:
        from audioclf.models import architectures
    except ImportError:  # no registry: model params are plain train.* fields, covered above
        return []
    return [
        f for name, arch in architectures().items() for f in float_fields(arch.params, ("train", "model_params", name))
    ]


FLOAT_FIELDS = float_fields() + model_float_fields()
BAD = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _nest(path: tuple[str, ...], value: Any) -> dict:
    for key in reversed(path):
        value = {key: value}
    return value


def test_the_generated_list_is_not_vacuous() -> None:
    keys = {".".join(p) for p, _ in FLOAT_FIELDS}
    # the fields the issue found (a sample; the test below covers all of them)
    assert {"train.lr", "train.weight_decay", "train.grad_clip", "features.top_db", "features.f_min"} <= keys
    assert {"train.augment.mixup_alpha", "data.duration_s", "data.max_file_mb"} <= keys
    assert len(keys) >= 20


@pytest.mark.parametrize("name", list(BAD))
@pytest.mark.parametrize("path, tp", FLOAT_FIELDS, ids=[".".join(p) for p, _ in FLOAT_FIELDS])
def test_every_float_field_refuses_nan_and_infinity(path: tuple[str, ...], tp: Any, name: str) -> None:
    key = ".".join(path)
    with pytest.raises(AudioclfError) as err:
        params_from_dict(_nest(path, _float_value(tp, BAD[name])))
    text = str(err.value)
    assert f"`{key}" in text and "must be a finite number" in text, text
    assert "\n" not in text


@pytest.mark.parametrize("literal", [".nan", ".inf", "-.inf", ".NaN", ".Inf"])
def test_yaml_spellings_of_non_finite_numbers_are_refused(tmp_path: Path, literal: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(f"train:\n  lr: {literal}\nfeatures:\n  top_db: 80\n")
    with pytest.raises(AudioclfError, match=r"`train\.lr` must be a finite number"):
        load_params(path)


def test_a_yaml_alias_bomb_gives_a_short_error(tmp_path: Path) -> None:
    """1.7 KB of YAML whose full repr is billions of characters: the echo stays one short line."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    bomb = "\n".join(lines)
    for where in ("train:\n  channels: *a8", "data:\n  classes: *a8", "train:\n  model: *a8", "split: *a8"):
        path = tmp_path / "params.yaml"
        path.write_text("junk:\n" + "\n".join("  " + line for line in bomb.splitlines()) + "\n" + where + "\n")
        text = path.read_text()
        assert len(text) < 2000
        # `junk` is an unknown block: refused first, so the bomb is moved into a known key as well
        raw = yaml.safe_load(text)
        raw.pop("junk")
        with pytest.raises(AudioclfError) as err:
            params_from_dict(raw)
        assert len(str(err.value)) < 400 and "\n" not in str(err.value), str(err.value)[:500]


@pytest.mark.parametrize("source, message", [
    ("http://[::1", r"`data\.source` 'http://\[::1' is not a valid URL \(Invalid IPv6 URL\)"),
    ("", r"`data\.source` is empty"),
    ("   ", r"`data\.source` is empty"),
    ("ftp://host/x.csv", r"scheme 'ftp'"),
])  # fmt: skip
def test_a_broken_data_source_is_one_line(tmp_path: Path, capsys, source: str, message: str) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"data": {"dataset": "csv", "source": source}}))
    code, err = cli(["stage", "download", "--params", str(path), "--out", str(tmp_path / "raw"),
                     "--cache-dir", str(tmp_path / "cache")], capsys)  # fmt: skip
    assert code == 2
    assert re.search(message, one_line_error(err)), err
    assert not (tmp_path / "raw" / "metadata.csv").exists()


def test_an_overlong_value_is_echoed_truncated() -> None:
    with pytest.raises(AudioclfError) as err:
        params_from_dict({"train": {"model": "x" * 100_000}})
    assert len(str(err.value)) < 400
    with pytest.raises(AudioclfError) as err:
        params_from_dict({"train": {"epochs": "9" * 100_000}})
    assert len(str(err.value)) < 400


def test_on_bad_row_takes_only_its_two_values() -> None:
    assert params_from_dict({"data": {"on_bad_row": "fail"}}).data.on_bad_row == "fail"
    assert params_from_dict({}).data.on_bad_row == "skip"
    with pytest.raises(AudioclfError, match=r"data\.on_bad_row` must be one of 'skip' \| 'fail'"):
        params_from_dict({"data": {"on_bad_row": "ignore"}})
    for key in ("max_file_mb", "max_metadata_mb"):
        with pytest.raises(AudioclfError, match=rf"data\.{key}` must be in"):
            params_from_dict({"data": {key: 0}})
