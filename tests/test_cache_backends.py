"""Cache backends chosen by URL (sqlite://, redis://, none): JSON only, never unpickled; chunked reads and
writes that still keep every answer of an interrupted run; Redis shared by a second worker; Parquet
export/import through the CLI; no secret in any cache."""

from __future__ import annotations

import json
import logging
import pathlib
import sqlite3
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from promptclf import Classifier
from promptclf.cache.store import SQLITE_FILE, ChunkedWriter, SQLiteCache, answer_key, home
from promptclf.cache.url import open_cache
from promptclf.cli import main
from promptclf.core.errors import ConfigError
from promptclf.core.methods import Prediction

from .redis_server import RedisServer, missing

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
SECRET = "sk-test-SECRET-do-not-leak"
needs_redis = pytest.mark.skipif(missing() is not None, reason=f"Redis tests skipped: {missing()}")


@pytest.fixture
def redis_url():
    if missing():
        pytest.skip(f"Redis tests skipped: {missing()}")
    with RedisServer() as url:
        yield url


def model_at(server):
    return f"openai-compatible:gpt-test@{server.base_url}"


class Exploit:
    """A pickle that, when loaded, creates a file: what a writer of a shared cache could plant."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


class Counted(SQLiteCache):
    """An SQLite cache that counts its round trips."""

    def __init__(self, directory):
        super().__init__(directory)
        self.reads, self.writes = [], []

    def get_many(self, keys):
        keys = list(keys)
        self.reads.append(len(keys))
        return super().get_many(keys)

    def set_many(self, mapping):
        self.writes.append(len(mapping))
        return super().set_many(mapping)


class Numbered:
    """A cacheable method answering "World" for each item, watching the cache as it goes; it can stop with
    Ctrl-C after `stop_after` answers."""

    identity, cacheable = "numbered-v1", True

    def __init__(self, labels, watch=None, stop_after=None):
        self.labels, self.watch, self.stop_after = labels, watch, stop_after
        self.asked, self.stored_when_yielding = [], []

    def predict(self, texts, usage):
        self.asked.extend(texts)
        for i in range(len(texts)):
            if i == self.stop_after:
                raise KeyboardInterrupt
            if self.watch is not None:
                self.stored_when_yielding.append(len(self.watch))
            yield i, Prediction("World", 0.9)


def numbered(labels_names, **kw):
    from promptclf.core.labels import LabelSet

    return Numbered(LabelSet.of(labels_names), **kw)


# --- choosing a backend -------------------------------------------------------------------------------


def test_cache_urls_choose_the_backend(tmp_path):
    assert open_cache(True).directory == home() / "answers"
    assert open_cache(f"sqlite://{tmp_path}/a").path == tmp_path / "a" / SQLITE_FILE
    assert open_cache(str(tmp_path / "b")).directory == tmp_path / "b"  # a plain directory, as before URLs
    assert open_cache("none") is None and open_cache(False) is None and open_cache(None) is None
    with pytest.raises(ConfigError, match="unknown kind") as bad:
        open_cache("memcached://user:pw-SECRET@host:11211")
    assert "SECRET" not in str(bad.value)


def test_an_unreachable_redis_is_a_one_line_exit_2_without_the_password(tmp_path, capsys):
    pytest.importorskip("redis", reason="the redis client is not installed (pip install 'promptclf[redis]')")
    from tests.redis_server import free_port

    src = tmp_path / "in.csv"
    src.write_text("text\nOil prices rise\n")
    code = main(
        [
            "classify",
            "--input",
            str(src),
            "--output",
            str(tmp_path / "o.csv"),
            "--labels",
            ",".join(LABELS),
            "--model",
            "openai-compatible:m@http://127.0.0.1:9/v1",
            "--cache",
            f"redis://:pw-SECRET@127.0.0.1:{free_port()}/0",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "cannot use it" in err and "127.0.0.1" in err
    assert "SECRET" not in err


def test_cache_flag_and_its_exclusive_partners(server_factory, sample_rows, tmp_path, capsys):
    server = server_factory()
    src = tmp_path / "in.csv"
    pd.DataFrame({"text": [r["text"] for r in sample_rows[:5]]}).to_csv(src, index=False)
    run = [
        "classify",
        "--input",
        str(src),
        "--output",
        str(tmp_path / "o.csv"),
        "--labels",
        ",".join(LABELS),
        "--model",
        model_at(server),
    ]
    assert main(run + ["--cache", f"sqlite://{tmp_path}/chosen"]) == 0
    assert len(SQLiteCache(tmp_path / "chosen")) == 5
    assert main(run + ["--cache", "none"]) == 0 and server.log.requests == 2  # asked again: no cache
    assert main(run + ["--cache", "bogus://x"]) == 2
    with pytest.raises(SystemExit) as both:
        main(run + ["--cache", "none", "--no-cache"])
    assert both.value.code == 2 and "not allowed with" in capsys.readouterr().err


def test_a_backend_travels_to_another_process_and_opens_the_same_store(tmp_path):
    import pickle

    cache = open_cache(f"sqlite://{tmp_path}")
    cache.set_many({"k": {"label": "World"}})
    assert pickle.loads(pickle.dumps(cache)).get_many(["k"]) == {"k": {"label": "World"}}


@needs_redis
def test_a_redis_backend_travels_without_its_password_and_reconnects(monkeypatch):
    import pickle

    with RedisServer(password="pw-SECRET") as url:
        monkeypatch.setenv("PROMPTCLF_REDIS_PASSWORD", "pw-SECRET")
        cache = open_cache(url.replace(":pw-SECRET@", ""))
        cache.set_many({"k": {"label": "World"}})
        pickled = pickle.dumps(cache)
        assert b"SECRET" not in pickled
        assert pickle.loads(pickled).get_many(["k"]) == {"k": {"label": "World"}}
        assert "SECRET" not in open_cache(url).url


class FakeRedis:
    """redis.Redis.from_url's stand-in: records what it was given, answers ping."""

    given: list = []

    @classmethod
    def from_url(cls, url, **options):
        cls.given.append((url, options))
        return cls()

    def ping(self):
        return True


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pw-SECRET@127.0.0.1:6379/0",
        "redis://u:pw-SECRET@127.0.0.1:6379/0",
        "redis://127.0.0.1:6379/0?password=pw-SECRET",
        "unix:///tmp/r.sock?password=pw-SECRET",
    ],
)
def test_a_redis_url_with_a_password_is_never_pickled(url, monkeypatch):
    import pickle

    import redis

    monkeypatch.setattr(redis.Redis, "from_url", FakeRedis.from_url)
    cache = open_cache(url)
    with pytest.raises(ConfigError, match="PROMPTCLF_REDIS_PASSWORD") as refused:
        pickle.dumps(cache)
    assert "SECRET" not in str(refused.value)


def test_a_redis_password_from_the_environment_is_used_and_never_pickled(monkeypatch):
    import pickle

    import redis

    monkeypatch.setattr(redis.Redis, "from_url", FakeRedis.from_url)
    monkeypatch.setenv("PROMPTCLF_REDIS_PASSWORD", "pw-SECRET")
    FakeRedis.given.clear()
    pickled = pickle.dumps(open_cache("redis://127.0.0.1:6379/0"))
    assert b"SECRET" not in pickled
    pickle.loads(pickled)  # the other process reads the password from its own environment
    assert [options["password"] for _, options in FakeRedis.given] == ["pw-SECRET"] * 2


# --- SQLite: JSON, never a pickle ----------------------------------------------------------------------


def test_sqlite_stores_json_text_and_the_first_answer_wins(tmp_path):
    cache = SQLiteCache(tmp_path)
    assert cache.set_many({"k1": {"label": "World"}, "k2": {"label": "Sports", "confidence": 0.5}}) == 2
    assert cache.set_many({"k1": {"label": "Business"}, "k3": {"label": "World"}}) == 1  # k1 kept
    assert cache.get_many(["k1", "k2", "nope"]) == {
        "k1": {"label": "World"},
        "k2": {"label": "Sports", "confidence": 0.5},
    }
    rows = dict(sqlite3.connect(tmp_path / SQLITE_FILE).execute("SELECT key, value FROM answers"))
    assert json.loads(rows["k2"]) == {"label": "Sports", "confidence": 0.5} and isinstance(rows["k2"], str)
    many = {f"key{i}": {"label": "World"} for i in range(1234)}  # more keys than one query takes
    cache.set_many(many)
    assert len(cache.get_many(many)) == 1234


def test_an_old_pickled_cache_is_never_unpickled(scripted_model, sample_rows, tmp_path, caplog):
    import diskcache

    rows = sample_rows[:4]
    texts = [r["text"] for r in rows]
    model = scripted_model()
    clf = Classifier(LABELS, "openai-compatible:fake@http://127.0.0.1:9", llm=model, cache=tmp_path / "answers")
    identity, labels = clf.method.identity, clf.labels.fingerprint()
    marker = tmp_path / "code-ran"
    with diskcache.Cache(str(tmp_path / "answers")) as old:  # what promptclf <= 0.1 (or an attacker) wrote there
        for text in texts:
            old.set(answer_key(identity, labels, text), Exploit(marker))
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        fresh = Classifier(LABELS, "openai-compatible:fake@http://127.0.0.1:9", llm=model, cache=tmp_path / "answers")
        assert fresh.classify(texts) == [r["label"] for r in rows]
    assert not marker.exists()
    assert model.calls == 1 and fresh.report.cache_hits == 0  # old entries are misses
    assert "older promptclf" in caplog.text


def test_a_cached_answer_outside_the_label_set_is_asked_again(scripted_model, sample_rows, tmp_path, caplog):
    row = sample_rows[0]
    model = scripted_model()
    clf = Classifier(LABELS, "openai-compatible:fake@http://127.0.0.1:9", llm=model, cache=tmp_path)
    SQLiteCache(tmp_path).set_many(
        {
            answer_key(clf.method.identity, clf.labels.fingerprint(), row["text"]): {
                "label": "Weather",
                "confidence": 1.0,
            }
        }
    )
    with caplog.at_level(logging.WARNING, logger="promptclf"):
        assert clf.classify([row["text"]]) == [row["label"]]
    assert model.calls == 1 and "does not fit this label set" in caplog.text


def test_the_embedding_cache_never_unpickles_and_stores_npy_bytes(tmp_path, monkeypatch):
    import diskcache

    from promptclf.core.hashing import fingerprint
    from promptclf.methods.embeddings import cached_encode

    monkeypatch.setenv("PROMPTCLF_HOME", str(tmp_path))

    class Encoder:
        identity, calls = "toy-encoder", 0

        def encode(self, texts):
            self.calls += 1
            return np.arange(len(texts) * 3, dtype=np.float32).reshape(len(texts), 3)

    encoder, texts, marker = Encoder(), ["a", "b"], tmp_path / "code-ran"
    with diskcache.Cache(str(tmp_path / "embeddings")) as old:
        old.set(fingerprint(encoder.identity, texts), Exploit(marker))
    assert cached_encode(encoder, texts).tolist() == [[0, 1, 2], [3, 4, 5]]
    assert not marker.exists() and encoder.calls == 1
    assert cached_encode(encoder, texts).tolist() == [[0, 1, 2], [3, 4, 5]] and encoder.calls == 1  # now cached
    with diskcache.Cache(str(tmp_path / "embeddings")) as store:
        stored = store.get(fingerprint(encoder.identity, texts))
    assert isinstance(stored, bytes) and stored.startswith(b"\x93NUMPY")


# --- chunked reads and writes -------------------------------------------------------------------------


def test_lookups_and_writes_go_by_chunks_and_answers_are_stored_during_the_run(tmp_path):
    cache = Counted(tmp_path)
    method = numbered(LABELS, watch=cache)
    texts = [f"item {i}" for i in range(250)]
    Classifier(LABELS, method=method, cache=cache).classify(texts)
    assert cache.reads == [250]  # one lookup for the whole run (the backend chunks it)
    assert cache.writes == [100, 100, 50]  # one write per 100 answers (sooner when they come slowly)
    assert all(stored >= i - 99 for i, stored in enumerate(method.stored_when_yielding))  # never > 99 pending
    again = numbered(LABELS)
    clf = Classifier(LABELS, method=again, cache=cache)
    clf.classify(texts)
    assert again.asked == [] and clf.report.cache_hits == 250


def test_an_interrupted_run_keeps_every_answer_and_resumes_from_the_cache(tmp_path):
    texts = [f"item {i}" for i in range(250)]
    with pytest.raises(KeyboardInterrupt):
        Classifier(LABELS, method=numbered(LABELS, stop_after=130), cache=tmp_path).classify(texts)
    assert len(SQLiteCache(tmp_path)) == 130  # the 30 pending past the last full chunk were written too
    resumed = numbered(LABELS)
    Classifier(LABELS, method=resumed, cache=tmp_path).classify(texts)
    assert resumed.asked == texts[130:]


def test_slow_answers_are_written_within_a_second():
    class Log:
        def __init__(self):
            self.writes = []

        def set_many(self, mapping):
            self.writes.append(dict(mapping))

    log = Log()
    writer = ChunkedWriter(log, size=100, seconds=0.0)  # every answer is "a second late"
    writer.add("a", {"label": "World"})
    writer.add("b", {"label": "World"})
    assert log.writes == [{"a": {"label": "World"}}, {"b": {"label": "World"}}]


# --- Redis ---------------------------------------------------------------------------------------------


def test_redis_stores_json_by_mget_and_set_nx(redis_url):
    import redis

    from promptclf.cache.redis_store import PREFIX, RedisCache

    cache = open_cache(redis_url)
    assert isinstance(cache, RedisCache)
    many = {f"{i:064x}": {"label": "World", "confidence": i / 3000} for i in range(2500)}  # > one chunk
    assert cache.set_many(many) == 2500
    assert cache.set_many({f"{0:064x}": {"label": "Sports"}}) == 0  # first answer wins
    assert cache.get_many(list(many) + ["missing"]) == many
    raw = redis.Redis.from_url(redis_url).get(PREFIX + f"{7:064x}")
    assert json.loads(raw) == {"label": "World", "confidence": 7 / 3000}
    assert len(cache) == 2500 and dict(cache.items())[f"{7:064x}"] == raw.decode()
    cache.clear()
    assert len(cache) == 0


def test_a_second_worker_is_answered_from_the_shared_redis_cache(redis_url, server_factory, sample_rows, tmp_path):
    server = server_factory()
    rows = sample_rows[:30]
    texts = [r["text"] for r in rows]
    first = Classifier(LABELS, model_at(server), cache=redis_url, batch_size=5)
    assert first.classify(texts) == [r["label"] for r in rows]
    paid = server.log.requests
    src, out = tmp_path / "in.parquet", tmp_path / "out.parquet"
    pd.DataFrame({"text": texts}).to_parquet(src)
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "promptclf.cli",
            "classify",
            "--input",
            str(src),
            "--output",
            str(out),
            "--labels",
            ",".join(LABELS),
            "--model",
            model_at(server),
            "--batch-size",
            "5",
            "--cache",
            redis_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert worker.returncode == 0, worker.stderr
    assert server.log.requests == paid  # the second process paid for nothing
    result = pd.read_parquet(out)
    assert list(result["predicted_label"]) == [r["label"] for r in rows] and set(result["source"]) == {"cache"}


@needs_redis
def test_a_redis_that_goes_away_mid_run_is_a_clear_error(tmp_path):
    from promptclf.cache.store import CacheError

    server = RedisServer(password="pw-SECRET")
    with server as url:
        cache = open_cache(url)
        cache.set_many({"k": {"label": "World"}})
    with pytest.raises(CacheError) as gone:
        cache.get_many(["k"])
    assert "127.0.0.1" in str(gone.value) and "SECRET" not in str(gone.value)


# --- export / import ----------------------------------------------------------------------------------


def test_export_and_import_merge_workers_caches_through_the_cli(server_factory, sample_rows, tmp_path, capsys):
    server = server_factory()
    rows = sample_rows[:20]
    texts = [r["text"] for r in rows]
    for worker, part in (("w1", texts[:10]), ("w2", texts[10:])):  # two workers, each with its own cache
        url = f"sqlite://{tmp_path}/{worker}"
        Classifier(LABELS, model_at(server), cache=url).classify(part)
        assert main(["cache", "export", str(tmp_path / f"{worker}.parquet"), "--cache", url]) == 0
    assert "exported 10 answers" in capsys.readouterr().out
    merged = f"sqlite://{tmp_path}/merged"
    assert main(["cache", "import", str(tmp_path / "w1.parquet"), str(tmp_path / "w2.parquet"), "--cache", merged]) == 0
    assert main(["cache", "import", str(tmp_path / "w1.parquet"), "--cache", merged]) == 0  # again: nothing new
    out = capsys.readouterr().out
    assert "10 answers, 10 new" in out and "10 answers, 0 new" in out
    paid = server.log.requests
    clf = Classifier(LABELS, model_at(server), cache=merged)
    assert clf.classify(texts) == [r["label"] for r in rows]
    assert server.log.requests == paid and clf.report.cache_hits == 20
    exported = pd.read_parquet(tmp_path / "w1.parquet")
    assert list(exported.columns) == ["key", "value"] and all(json.loads(v)["label"] in LABELS for v in exported.value)


def test_import_into_redis_then_a_worker_pays_nothing(redis_url, server_factory, sample_rows, tmp_path):
    server = server_factory()
    texts = [r["text"] for r in sample_rows[:8]]
    Classifier(LABELS, model_at(server), cache=tmp_path / "local").classify(texts)
    assert main(["cache", "export", str(tmp_path / "x.parquet"), "--cache", str(tmp_path / "local")]) == 0
    assert main(["cache", "import", str(tmp_path / "x.parquet"), "--cache", redis_url]) == 0
    paid = server.log.requests
    Classifier(LABELS, model_at(server), cache=redis_url).classify(texts)
    assert server.log.requests == paid


def test_export_says_which_offline_models_trained_here_it_leaves_behind(sample_rows, tmp_path, monkeypatch, capsys):
    from promptclf.core.labels import LabelSet
    from promptclf.methods.offline import OfflineClassifier, OfflineConfig
    from promptclf.task.examples import sample_per_class

    monkeypatch.setenv("PROMPTCLF_HOME", str(tmp_path / "home"))
    export = ["cache", "export", str(tmp_path / "x.parquet"), "--cache", f"sqlite://{tmp_path}/answers"]
    OfflineClassifier(LABELS, config=OfflineConfig(components=("labels",))).fit()  # zero-shot: nothing learned
    assert main(export) == 0
    assert "not in the export" not in capsys.readouterr().err
    examples = sample_per_class(sample_rows, LabelSet.of(LABELS), 2, seed=0)
    trained = OfflineClassifier(LABELS, examples, OfflineConfig(components=("examples",))).fit().workdir()
    assert main(export) == 0
    err = capsys.readouterr().err
    assert "not in the export: 1 offline model trained on your examples" in err and str(trained) in err
    assert "trains it again" in err
    with pytest.raises(SystemExit):
        main(["cache", "export", "--help"])
    assert "not included" in " ".join(capsys.readouterr().out.split())


def test_an_empty_cache_exports_a_file_with_no_rows(tmp_path):
    assert main(["cache", "export", str(tmp_path / "e.parquet"), "--cache", f"sqlite://{tmp_path}/empty"]) == 0
    assert pd.read_parquet(tmp_path / "e.parquet").shape == (0, 2)


@pytest.mark.parametrize(
    "bad, says",
    [
        ("missing", "no such file"),
        ("not-parquet", "not a Parquet file"),
        ("no-value-column", "no value column"),
        ("bad-key", "row 1: key 'not-a-key'"),
        ("bad-value", "row 0: value '[1, 2]' is not a JSON object"),
    ],
)
def test_a_bad_import_file_is_exit_2_naming_the_problem_and_imports_nothing(tmp_path, capsys, bad, says):
    path = tmp_path / f"{bad}.parquet"
    good = '{"label": "World"}'
    if bad == "not-parquet":
        path.write_text("key,value\n")
    elif bad == "no-value-column":
        pd.DataFrame({"key": ["a" * 64]}).to_parquet(path)
    elif bad == "bad-key":
        pd.DataFrame({"key": ["a" * 64, "not-a-key"], "value": [good, good]}).to_parquet(path)
    elif bad == "bad-value":
        pd.DataFrame({"key": ["a" * 64], "value": ["[1, 2]"]}).to_parquet(path)
    code = main(["cache", "import", str(path), "--cache", f"sqlite://{tmp_path}/c"])
    err = capsys.readouterr().err
    assert code == 2 and says in err and str(path) in err
    assert len(SQLiteCache(tmp_path / "c")) == 0


# --- secrets ------------------------------------------------------------------------------------------


def test_no_secret_reaches_the_cache_key_or_any_stored_byte(server_factory, sample_rows, tmp_path, monkeypatch):
    from langchain_openai import ChatOpenAI

    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", SECRET)
    server = server_factory(api_key=SECRET)
    texts = [r["text"] for r in sample_rows[:5]]
    by_name = Classifier(LABELS, model_at(server), cache=tmp_path / "c")
    llm = ChatOpenAI(model="gpt-test", base_url=server.base_url, api_key=SECRET)
    by_llm = Classifier(LABELS, model_at(server), llm=llm, cache=tmp_path / "c")
    for clf in (by_name, by_llm):
        clf.classify(texts)
        assert SECRET not in clf.method.identity  # what the key hashes
    assert main(["cache", "export", str(tmp_path / "x.parquet"), "--cache", str(tmp_path / "c")]) == 0
    assert server.log.requests == 2
    for stored in (tmp_path / "c").iterdir():
        assert SECRET.encode() not in stored.read_bytes()
    assert SECRET.encode() not in (tmp_path / "x.parquet").read_bytes()


def test_opening_a_fresh_cache_waits_out_another_process_switching_it_to_wal(tmp_path):
    # Two processes opening a new cache at once both hold a read lock while asking for the write lock that
    # the switch to WAL needs; SQLite answers one of them "database is locked" at once, without waiting
    # (its busy timeout does not apply to a deadlock). A writer holding the lock in rollback mode is the same
    # refusal, made deterministic: the cache must wait until the lock is released, then open.
    import threading

    path = tmp_path / SQLITE_FILE
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("CREATE TABLE answers (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
    other.execute("BEGIN")
    other.execute("INSERT INTO answers VALUES ('k', '{}')")
    threading.Timer(1.0, lambda: other.execute("COMMIT")).start()
    cache = SQLiteCache(tmp_path)
    assert cache._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert cache.get_many(["k"]) == {"k": {}}
    other.close()
