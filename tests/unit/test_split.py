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
