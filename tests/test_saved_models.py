"""Trained models on disk: SetFit directories (finetuned:, fallback=, $PROMPTCLF_HOME/offline) load without
unpickling anything, and the offline classifier's trained state is written whole, by one process at a time."""

from __future__ import annotations

import json
import pickle
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from promptclf.core.errors import ConfigError
from promptclf.core.labels import LabelSet
from promptclf.methods.finetune import finetune, load_finetuned
from promptclf.methods.offline import COMPONENTS, Component, Estimate, OfflineClassifier, OfflineConfig

from .conftest import LABELS
from .test_offline import TINY_SETFIT, few  # noqa: F401 - the fixture, shared

OLD_HEAD = "model_head.pkl"  # setfit's joblib pickle of the head, as promptclf saved it before


class CreatesFile:
    """Unpickling this creates the file: what a planted model_head.pkl could do, and worse."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def plant_pickle(directory: Path, marker: Path) -> None:
    (directory / OLD_HEAD).write_bytes(pickle.dumps(CreatesFile(marker)))


@pytest.fixture(scope="module")
def setfit_dir(few, tmp_path_factory):  # noqa: F811
    train, _ = few
    out = tmp_path_factory.mktemp("setfit") / "sf"
    finetune(train, LABELS, out=out, method="setfit", progress=False, **TINY_SETFIT)
    return out


@pytest.fixture
def copied(setfit_dir, tmp_path) -> Path:
    """A copy of the trained directory this test may change."""
    return Path(shutil.copytree(setfit_dir, tmp_path / "copy"))


def load_as_finetuned(path: Path):
    return load_finetuned(path, LABELS)


def load_as_offline_component(path: Path):
    return COMPONENTS["setfit"](LabelSet.of(LABELS), OfflineConfig()).fit([], path).method


LOADERS = {"finetuned": load_as_finetuned, "offline": load_as_offline_component}


def test_a_trained_setfit_directory_holds_no_pickle(setfit_dir):
    assert not list(setfit_dir.rglob("*.pkl")) and not list(setfit_dir.rglob("*.bin"))


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_planted_head_pickle_is_never_unpickled(copied, few, tmp_path, loader):  # noqa: F811
    _, test = few
    marker = tmp_path / "pwned"
    plant_pickle(copied, marker)
    method = LOADERS[loader](copied)
    assert not marker.exists()
    texts = [r["text"] for r in test[:5]]
    assert np.allclose(method.probabilities(texts).sum(1), 1.0)


@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_a_directory_with_only_the_old_head_pickle_is_refused_with_how_to_retrain(copied, tmp_path, loader):
    marker = tmp_path / "pwned"
    for path in copied.iterdir():
        if path.name.startswith("head") or path.name == OLD_HEAD:
            path.unlink()
    plant_pickle(copied, marker)
    with pytest.raises(ConfigError, match=rf"{OLD_HEAD}.*promptclf finetune --method setfit"):
        LOADERS[loader](copied)
    assert not marker.exists()


def test_training_from_a_base_with_a_head_pickle_does_not_unpickle_it(copied, few, tmp_path):  # noqa: F811
    train, _ = few
    marker = tmp_path / "pwned"
    plant_pickle(copied, marker)
    one_step = dict(TINY_SETFIT, min_pairs=16, max_pairs=16)
    try:
        finetune(train, LABELS, out=tmp_path / "again", method="setfit", progress=False, base=str(copied), **one_step)
    finally:  # before anything it raises
        assert not marker.exists()


def test_the_offline_state_kept_before_the_head_stopped_being_a_pickle_is_retrained(
    setfit_dir,
    few,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """Offline state saved by an older promptclf (its SetFit head a pickle) is not read: trained again."""
    monkeypatch.setenv("PROMPTCLF_HOME", str(tmp_path / "home"))
    train, _ = few
    clf = OfflineClassifier(LABELS, train, OfflineConfig(components=("examples",)))
    old = tmp_path / "home" / "offline" / clf.identity[:24]  # where promptclf kept it before
    shutil.copytree(setfit_dir, old / "setfit")
    (old / "offline.json").write_text(json.dumps({"chosen": "setfit", "weights": {"setfit": 1.0}}))
    marker = tmp_path / "pwned"
    plant_pickle(old / "setfit", marker)
    try:
        clf.fit()
    finally:
        assert not marker.exists()
    assert clf.estimate.chosen == "examples" and clf.workdir() != old


@pytest.mark.filterwarnings("ignore:Label not 2 is present")
@pytest.mark.parametrize("kind", ["single-label", "binary", "multi-label"])
def test_a_head_saved_as_json_gives_the_same_probabilities(kind, tmp_path):
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from promptclf.methods.setfit_head import load_head, save_head

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8))
    if kind == "multi-label":  # the last label on no row: a constant predictor, as OneVsRestClassifier makes it
        y = np.c_[x[:, 0] > 0, x[:, 1] > 0, np.zeros(40, dtype=bool)].astype(int)
        head = OneVsRestClassifier(LogisticRegression(class_weight="balanced")).fit(x, y)
    else:
        y = (x[:, 0] > 0).astype(int) + (2 * (x[:, 1] > 0) if kind == "single-label" else 0)
        head = LogisticRegression(C=0.5).fit(x, y)
    save_head(head, tmp_path)
    loaded, settings = load_head(tmp_path)
    test = rng.normal(size=(10, 8))
    np.testing.assert_array_equal(loaded.predict_proba(test), head.predict_proba(test))
    assert settings["multi_target_strategy"] == ("one-vs-rest" if kind == "multi-label" else None)


# --- the offline classifier's trained state: one writer at a time, each file whole ------------------------------


class SlowDiskModel(Component):
    """A SetFit stand-in: saves its model in its fold's directory (slowly: another process reading it meanwhile
    would find half a file), and loads it from there when it is saved."""

    name = "setfit"
    trainings: list = []

    def fit(self, rows, workdir=None):
        saved = workdir / "promptclf.json"
        if saved.exists():
            self.model = json.loads(saved.read_text())
            return self
        type(self).trainings.append(workdir)
        self.model = {"rows": len(rows)}
        text = json.dumps(self.model)
        workdir.mkdir(parents=True, exist_ok=True)
        with saved.open("w") as f:
            f.write(text[:3])
            f.flush()
            time.sleep(0.2)
            f.write(text[3:])
        return self

    def probabilities(self, texts, usage=None):
        probs = np.ones((len(texts), len(self.labels)))
        probs[:, self.model["rows"] % len(self.labels)] += 1
        return probs / probs.sum(1, keepdims=True)


def test_two_trainings_of_the_same_examples_at_once_train_once_and_both_load_it(few, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PROMPTCLF_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(COMPONENTS, "setfit", SlowDiskModel)
    SlowDiskModel.trainings = []
    train, test = few
    texts = [r["text"] for r in test[:5]]
    _ = OfflineClassifier(LABELS, train).identity  # the encoder loaded first: transformers lazy imports race in threads
    start, fitted, errors = threading.Barrier(2), [], []

    def fit():
        start.wait()
        try:
            config = OfflineConfig(components=("setfit",), time_budget=None)  # every fold: a budget would cut some
            fitted.append(OfflineClassifier(LABELS, train, config).fit())
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=fit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    first, second = fitted
    assert len(SlowDiskModel.trainings) == first.estimate.folds == 3  # one training per fold, in all
    assert first.estimate == second.estimate == Estimate(**json.loads((first.workdir() / "offline.json").read_text()))
    np.testing.assert_array_equal(first.probabilities(texts), second.probabilities(texts))


def test_a_state_write_interrupted_midway_leaves_the_state_before_it(few, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("PROMPTCLF_HOME", str(tmp_path / "home"))
    train, _ = few
    clf = lambda: OfflineClassifier(LABELS, train, OfflineConfig(components=("examples",)))  # noqa: E731
    saved = clf().fit().estimate
    state = clf().workdir() / "offline.json"
    write_text = Path.write_text

    def dies_midway(path, text, *args, **kwargs):  # a full disk, or the process killed while it writes
        write_text(path, text[: len(text) // 2], *args, **kwargs)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", dies_midway)
    with pytest.raises(OSError):
        clf().fit()
    monkeypatch.setattr(Path, "write_text", write_text)
    assert Estimate(**json.loads(state.read_text())) == saved
    assert [p.name for p in state.parent.iterdir() if p.is_file()] == ["offline.json"]  # no temporary file left
    assert clf().fit().estimate == saved
