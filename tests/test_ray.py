"""Ray Data on a real local cluster (ray.init(num_cpus=2)): AG News rows from ../shared/data/ag_news/test.csv
labelled by actors against the fake OpenAI-compatible server equal the single-process Classifier's answers,
a rerun pays nothing, a bad row gets an error, and `promptclf classify --engine ray` writes Parquet parts.

Marked `ray` (out of the default run; `python3 -m pytest -m ray`), skipped where Ray is not installed. The
last two tests need no Ray: they check what a user without it is told."""

import sys

import pandas as pd
import pytest

from promptclf import Classifier, ConfigError
from promptclf.cli import main
from promptclf.core.data import load_ag_news, split

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
FAULTS = ("429", "500", "malformed", "short", "duplicate", "offlabel", "zero_based", "shifted")  # not "slow"


@pytest.fixture(scope="module")
def cluster(promptclf_home):
    """One local cluster for the module; its workers inherit this session's PROMPTCLF_HOME (the cache)."""
    ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "promptclf[ray]"')
    pytest.importorskip("ray.data", reason='Ray Data is not installed: pip install "promptclf[ray]"')
    import logging

    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def ag_frame():
    """60 AG News test rows (seeded), with an id to line rows up by."""
    (rows,) = split(load_ag_news(), [60], seed=13)
    return pd.DataFrame({"id": range(len(rows)), "text": [r["text"] for r in rows], "gold": [r["label"] for r in rows]})


@pytest.fixture
def server(server_factory, ag_frame):
    gold = {" ".join(t.split()): label for t, label in zip(ag_frame["text"], ag_frame["gold"])}
    return server_factory(
        oracle=lambda text: gold.get(" ".join(text.split()), "World"), fault_rate=0.2, faults=FAULTS, seed=1
    )


def labelled(ray, frame, model, **options):
    from promptclf.integrations.ray import label_dataset

    quarter = -(-len(frame) // 4)  # four blocks, so both actors get work (from_pandas's own split fails on pandas 3)
    ds = ray.data.from_pandas([frame.iloc[i : i + quarter] for i in range(0, len(frame), quarter)])
    return label_dataset(ds, LABELS, model, **options).to_pandas().sort_values("id").reset_index(drop=True)


@pytest.mark.ray
def test_actors_answer_as_one_process_does_and_a_rerun_pays_nothing(cluster, ag_frame, server, tmp_path):
    from promptclf.integrations.ray import UsageTally

    model = f"openai-compatible:gpt-ray@{server.base_url}"
    single = Classifier(LABELS, model, batch_size=5, cache=tmp_path / "single").predict(list(ag_frame["text"]))
    before, tokens_before = server.log.requests, (server.log.prompt_tokens, server.log.completion_tokens)
    tally = UsageTally.start(model)
    out = labelled(cluster, ag_frame, model, actors=2, rows_per_batch=16, batch_size=5, tally=tally)
    assert list(out["id"]) == list(ag_frame["id"]) and list(out["text"]) == list(ag_frame["text"])
    assert list(out["predicted_label"]) == [p.label for p in single] == list(ag_frame["gold"])
    assert list(out["confidence"].astype(object).where(out["confidence"].notna(), None)) == [
        p.confidence for p in single
    ]
    assert set(out["source"]) == {"api"} and out["error"].isna().all()
    paid = server.log.requests - before
    usage = tally.usage()
    assert paid >= 12 and usage.requests == paid and usage.items == 60 and usage.prompt_tokens > 0
    assert (usage.prompt_tokens, usage.completion_tokens) == (
        server.log.prompt_tokens - tokens_before[0],
        server.log.completion_tokens - tokens_before[1],
    )

    rerun_tally = UsageTally.start(model)
    again = labelled(cluster, ag_frame, model, actors=2, rows_per_batch=16, batch_size=5, tally=rerun_tally)
    assert server.log.requests - before == paid  # the actors shared the cache file in PROMPTCLF_HOME
    assert list(again["predicted_label"]) == list(out["predicted_label"]) and set(again["source"]) == {"cache"}
    assert rerun_tally.usage().cache_hits == 60 and rerun_tally.usage().requests == 0


@pytest.mark.ray
def test_a_bad_row_gets_an_error_and_the_job_goes_on(cluster, ag_frame, server):
    from promptclf.integrations.ray import UsageTally

    model = f"openai-compatible:gpt-ray-bad@{server.base_url}"
    frame = ag_frame.head(20).copy()
    frame.loc[[3, 11], "text"] = ["", "   "]
    tally = UsageTally.start(model)
    out = labelled(cluster, frame, model, actors=2, rows_per_batch=8, cache=False, tally=tally)
    assert (
        list(out["error"].iloc[[3, 11]])
        == ["bad input: empty or whitespace-only (pass skip_empty=True to get None for it)"] * 2
    )
    assert out["predicted_label"].iloc[[3, 11]].isna().all()
    good = out.drop(index=[3, 11])
    assert list(good["predicted_label"]) == list(good["gold"]) and good["error"].isna().all()
    assert tally.rows_with_error() == 2


@pytest.mark.ray
def test_cli_ray_engine_writes_a_directory_of_parquet_parts(cluster, ag_frame, server, tmp_path, capsys, monkeypatch):
    source, out = tmp_path / "big.parquet", tmp_path / "out"
    ag_frame.to_parquet(source, index=False)
    args = [
        "classify",
        "--engine",
        "ray",
        "--actors",
        "2",
        "--input",
        str(source),
        "--labels",
        ",".join(LABELS),
        "--model",
        f"openai-compatible:gpt-ray-cli@{server.base_url}",
        "--batch-size",
        "5",
        "--no-progress",
    ]
    assert main([*args, "--output", str(out)]) == 0
    parts = sorted(out.glob("*.parquet"))
    assert parts
    result = pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
    assert list(result["id"]) == list(ag_frame["id"])  # parts in file-name order hold the input order
    assert list(result["predicted_label"]) == list(result["gold"]) and result["error"].isna().all()
    err = capsys.readouterr().err
    assert "wrote 60 rows" in err and "60 items" in err and "calls" in err

    assert main([*args, "--output", str(out)]) == 2  # parts are never mixed into an old output
    assert "not an empty directory" in capsys.readouterr().err

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)  # a missing key stops the run before any actor starts
    assert (
        main(
            [
                "classify",
                "--engine",
                "ray",
                "--input",
                str(source),
                "--output",
                str(tmp_path / "o"),
                "--labels",
                ",".join(LABELS),
                "--model",
                "openai:gpt-4o-mini",
            ]
        )
        == 2
    )
    assert "OPENAI_API_KEY is not set" in capsys.readouterr().err and not (tmp_path / "o").exists()

    bad = ag_frame.head(10).copy()
    bad.loc[4, "text"] = " "
    bad.to_parquet(source, index=False)
    assert main([*args, "--output", str(tmp_path / "out2")]) == 1
    assert "1 rows could not be labelled" in capsys.readouterr().err
    result = pd.read_parquet(tmp_path / "out2")
    assert len(result) == 10 and result["error"].notna().sum() == 1


@pytest.mark.ray
def test_a_local_model_loaded_once_per_actor_answers_as_one_process_does(cluster, ag_frame):
    frame = ag_frame.head(20)
    single = Classifier(LABELS, "embed", cache=False).predict(list(frame["text"]))
    out = labelled(cluster, frame, "embed", actors=2, rows_per_batch=5, cache=False)
    assert list(out["predicted_label"]) == [p.label for p in single]
    assert list(out["confidence"]) == pytest.approx([p.confidence for p in single], rel=1e-4)


@pytest.mark.ray
def test_parquet_parts_read_back_in_input_order(cluster, ag_frame, server, tmp_path):
    from promptclf.integrations.ray import label_parquet

    source, out = tmp_path / "in", tmp_path / "out"
    source.mkdir()
    for n, start in enumerate(range(0, 60, 20)):  # a directory of three input files
        ag_frame.iloc[start : start + 20].to_parquet(source / f"part-{n}.parquet", index=False)
    usage, rows_with_error = label_parquet(
        source,
        out,
        LABELS,
        f"openai-compatible:gpt-ray-order@{server.base_url}",
        actors=2,
        rows_per_batch=7,
        progress=False,
        batch_size=3,
    )
    assert len(list(out.glob("*.parquet"))) > 3 and rows_with_error == 0 and usage.items == 60
    result = pd.read_parquet(out)
    assert list(result["id"]) == list(ag_frame["id"])
    assert list(result["predicted_label"]) == list(result["gold"])


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    from promptclf.integrations.ray import label_dataset

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as it does where it is missing
    with pytest.raises(ConfigError, match=r'pip install "promptclf\[ray\]"'):
        label_dataset(None, LABELS, "embed")


def test_cli_without_ray_exits_2_with_the_install_command(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)
    pd.DataFrame({"text": ["a"]}).to_parquet(tmp_path / "in.parquet")
    assert (
        main(
            [
                "classify",
                "--engine",
                "ray",
                "--input",
                str(tmp_path / "in.parquet"),
                "--output",
                str(tmp_path / "out"),
                "--labels",
                ",".join(LABELS),
                "--model",
                "embed",
            ]
        )
        == 2
    )
    assert 'pip install "promptclf[ray]"' in capsys.readouterr().err


def test_a_tally_add_returns_once_the_tally_holds_the_counts(monkeypatch):
    """An actor's counts must reach the tally before its batch is handed on: a call nobody waits for may
    still be in flight (or lost with the actor) when the driver reads the tally. Modelled without Ray: a
    call's reference runs only when it is fetched, as nothing guarantees it runs sooner."""
    import types

    from promptclf.integrations import ray as ray_integration
    from promptclf.integrations.ray import UsageTally, _Counts

    counts = _Counts()

    class Method:
        def __init__(self, name):
            self.name = name

        def remote(self, *args):
            return lambda: getattr(counts, self.name)(*args)

    actor = types.SimpleNamespace(add=Method("add"), counts=Method("counts"))
    monkeypatch.setattr(ray_integration, "require_ray", lambda: types.SimpleNamespace(get=lambda ref: ref()))
    tally = UsageTally(actor, "openai-compatible:m@http://127.0.0.1:9/v1", None)
    tally.add({"requests": 2, "prompt_tokens": 40})
    tally.add({"requests": 1, "prompt_tokens": 10})
    assert counts.counts() == {"requests": 3, "prompt_tokens": 50}
    assert tally.usage().requests == 3


def test_the_ray_engine_self_trains_on_the_same_texts_as_the_in_process_path(monkeypatch, tmp_path, sample_rows):
    """Before: --engine ray passed no texts to self-train on, so the default offline model labelled differently."""
    import promptclf.integrations.ray as ray_integration
    from promptclf.core.data import check_input
    from promptclf.methods.label_similarity import SAMPLE

    texts = [f"{r['text']} ({i})" for i, r in enumerate(sample_rows * 2)]
    src = tmp_path / "in.parquet"
    pd.DataFrame({"text": texts}).to_parquet(src)
    seen = {}

    def fake_label_parquet(source, destination, labels, model, **options):
        seen.update(options)
        return ray_integration.Usage(), 0

    monkeypatch.setattr(ray_integration, "label_parquet", fake_label_parquet)
    assert (
        main(
            [
                "classify",
                "--engine",
                "ray",
                "--input",
                str(src),
                "--output",
                str(tmp_path / "out"),
                "--labels",
                ",".join(LABELS),
                "--no-progress",
            ]
        )
        == 0
    )
    in_process = check_input(src, "text", sample_size=SAMPLE).sample
    assert len(in_process) == len(texts) and seen["unlabeled"] == in_process


@pytest.mark.ray
def test_the_default_offline_model_labels_row_for_row_as_on_ray(cluster, tmp_path, sample_rows):
    texts = [f"{r['text']} ({i})" for i, r in enumerate(sample_rows * 2)]
    src = tmp_path / "in.parquet"
    pd.DataFrame({"id": range(len(texts)), "text": texts}).to_parquet(src)
    common = ["--input", str(src), "--labels", ",".join(LABELS), "--no-progress"]
    assert main(["classify", *common, "--output", str(tmp_path / "here.parquet")]) == 0
    assert main(["classify", "--engine", "ray", "--actors", "2", *common, "--output", str(tmp_path / "ray")]) == 0
    here = pd.read_parquet(tmp_path / "here.parquet")
    on_ray = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "ray").glob("*.parquet"))], ignore_index=True)
    assert list(on_ray["id"]) == list(here["id"])
    assert list(on_ray["predicted_label"]) == list(here["predicted_label"])


def test_actors_that_compute_never_hold_the_cpu_ray_data_reads_with():
    from promptclf.integrations.ray import default_num_cpus

    for actors, cpus in [(2, 2), (1, 2), ((1, 3), 2), (4, 16), (1, 1)]:
        most = actors[1] if isinstance(actors, tuple) else actors
        each = default_num_cpus(False, actors, cpus)
        assert each <= 1 and cpus - most * each >= min(1, cpus)
    assert default_num_cpus(False, 4, 16) == 1 and default_num_cpus(True, 2, 2) == 0.25
