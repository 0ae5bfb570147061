import pandas as pd
import pytest

from audioclf.config import SplitConfig
from audioclf.errors import AudioclfError
from audioclf.split import make_splits


def _meta(n_per_class=20, classes=("a", "b", "c")):
    rows = []
    for label in classes:
        for k in range(n_per_class):
            rows.append(
                {"path": f"{label}/{k}.wav", "label": label, "fold": k % 5 + 1, "group": f"{label}-spk{k // 4}"}
            )
    return pd.DataFrame(rows)


def test_folds_strategy_uses_the_corpus_folds():
    parts = make_splits(_meta(), SplitConfig(strategy="folds", test_fold=5, val_fold=4))
    assert set(parts["test"]["fold"]) == {5} and set(parts["val"]["fold"]) == {4}
    assert set(parts["train"]["fold"]) == {1, 2, 3}


def test_stratified_is_seeded_disjoint_and_balanced():
    cfg = SplitConfig(strategy="stratified", val_frac=0.2, test_frac=0.2, seed=1)
    a, b = make_splits(_meta(), cfg), make_splits(_meta(), cfg)
    assert all(a[k]["path"].tolist() == b[k]["path"].tolist() for k in a)
    paths = [set(p["path"]) for p in a.values()]
    assert not (paths[0] & paths[1] or paths[0] & paths[2] or paths[1] & paths[2])
    assert a["test"]["label"].value_counts().to_dict() == {"a": 4, "b": 4, "c": 4}


def test_group_strategy_never_shares_a_group():
    parts = make_splits(_meta(), SplitConfig(strategy="group", val_frac=0.2, test_frac=0.2))
    groups = [set(p["group"]) for p in parts.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sum(len(p) for p in parts.values()) == 60


def test_missing_test_fold_is_a_clear_error():
    with pytest.raises(AudioclfError, match=r"split.test_fold.*folds \[1, 2, 3, 4, 5\]"):
        make_splits(_meta(), SplitConfig(test_fold=7, val_fold=4))


def test_too_small_classes_for_stratified():
    with pytest.raises(AudioclfError, match="at least 3 per class"):
        make_splits(_meta(n_per_class=2), SplitConfig(strategy="stratified"))


@pytest.mark.parametrize(
    ("preset", "folds", "expected"),
    [
        ((5, 4), [1, 2, 3, 4, 5], (5, 4)),  # built-in set / ESC-50
        ((3, 2), [1, 2, 3], (3, 2)),  # Speech Commands: 1 train, 2 validation, 3 test
        ((1, 2), list(range(1, 11)), (1, 2)),  # FSDD: fold 1 = the official test takes
        ((None, None), [2, 4, 7], (7, 4)),  # a CSV's own folds: the last for test, the one before for val
        ((5, 4), [1, 2, 3], (3, 2)),  # data.folds picked a subset without the preset's folds
    ],
)
def test_auto_folds_come_from_the_corpus_preset(preset, folds, expected):
    from audioclf.split import resolve_folds

    assert resolve_folds("auto", "auto", folds, preset) == expected
    assert resolve_folds(folds[0], "auto", folds, preset)[0] == folds[0]  # an explicit fold wins


def test_auto_folds_need_folds():
    from audioclf.split import resolve_folds

    with pytest.raises(AudioclfError, match=r"no folds; use split\.strategy: stratified"):
        resolve_folds("auto", "auto", [], (5, 4))
    with pytest.raises(AudioclfError, match="val_fold` resolves to 3"):
        resolve_folds(3, 3, [1, 2, 3], (None, None))


def test_speechcommands_preset_splits_with_auto_folds_and_no_other_setting():
    from audioclf.sources import get_preset

    preset = get_preset("speechcommands")
    meta = _meta(n_per_class=9).assign(fold=lambda m: m.index % 3 + 1)
    parts = make_splits(meta, SplitConfig(), (preset.test_fold, preset.val_fold))
    assert set(parts["test"]["fold"]) == {3} and set(parts["val"]["fold"]) == {2} and set(parts["train"]["fold"]) == {1}
