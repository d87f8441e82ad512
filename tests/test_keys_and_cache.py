"""Keys go only to the host they belong to and never into reprs or errors; the cache key changes with
everything that changes an answer; tests never touch the user's own promptclf cache."""

import os
import sys
from pathlib import Path

import pytest

from promptclf import Classifier, LabellingError, UnknownModelError, classify
from promptclf.cache.store import home
from promptclf.cli import main
from promptclf.core.credentials import api_key, key_variable, redact_url
from promptclf.core.errors import ConfigError
from promptclf.providers.registry import parse_model

LABELS = ["World", "Sports", "Business", "Sci/Tech"]
SECRET = "sk-test-SECRET-do-not-leak"


def model_at(server, provider="openai-compatible", name="gpt-test"):
    return f"{provider}:{name}@{server.base_url}"


# --- keys ---------------------------------------------------------------------------------------------


def test_openai_key_is_never_sent_to_another_server(server_factory, sample_rows, cache_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.delenv("OPENAI_COMPATIBLE_API_KEY", raising=False)
    server = server_factory()
    texts = [r["text"] for r in sample_rows[:3]]
    classify(texts, labels=LABELS, model=model_at(server), cache=cache_dir)
    classify(texts, labels=LABELS, model=model_at(server, "completions"), cache=cache_dir, calibrate="none")
    assert len(server.log.authorization) == 2 and not any(SECRET in a for a in server.log.authorization)


def test_other_servers_take_their_key_from_their_own_variable(server_factory, sample_rows, cache_dir, monkeypatch):
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", "server-key")
    server = server_factory(api_key="server-key")
    rows = sample_rows[:3]
    assert classify([r["text"] for r in rows], labels=LABELS, model=model_at(server), cache=cache_dir) == [
        r["label"] for r in rows
    ]
    assert api_key(parse_model("openai-compatible:m@https://api.openai.com/v1")) != "server-key"


def test_credentials_in_a_base_url_never_reach_reprs_reports_or_errors(cache_dir):
    url = "http://alice:pw-SECRET@127.0.0.1:9/v1?token=tok-SECRET"
    spec = parse_model(f"openai-compatible:m@{url}")
    assert spec.base_url == url  # the client still gets them
    for shown in (repr(spec), spec.id, redact_url(url)):
        assert "SECRET" not in shown and "127.0.0.1:9/v1" in shown
    with pytest.raises(UnknownModelError) as bad:
        parse_model(f"openai-compatible:@{url}")
    assert "SECRET" not in str(bad.value)
    clf = Classifier(LABELS, f"openai-compatible:m@{url}", cache=cache_dir, max_attempts=1)
    with pytest.raises(LabellingError) as down:
        clf.classify(["some text"])
    assert "SECRET" not in str(down.value) and "SECRET" not in clf.report.summary()


def test_a_refused_key_is_one_line_exit_2_without_the_key(server_factory, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("OPENAI_COMPATIBLE_API_KEY", SECRET)
    server = server_factory(api_key="another-key")  # its 401 message repeats the key it was given
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
            model_at(server),
            "--no-cache",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "401" in err and SECRET not in err


def test_a_key_given_in_code_never_reaches_an_error(server_factory):
    """A key given as an llm's api_key (or to api_key()) is scrubbed like one from the environment."""
    from langchain_openai import ChatOpenAI

    from promptclf.core.credentials import scrub

    given = "sk-given-in-code-SECRET-1"
    server = server_factory(api_key="another-key")  # its 401 message repeats the key it was given
    llm = ChatOpenAI(model="gpt-test", base_url=server.base_url, api_key=given)
    clf = Classifier(LABELS, model_at(server), llm=llm, cache=False, max_attempts=1)
    with pytest.raises(ConfigError) as refused:
        clf.classify(["Oil prices rise"])
    assert "401" in str(refused.value) and given not in str(refused.value)
    passed = "sk-passed-to-api-key-SECRET-2"
    assert api_key(parse_model("openai-compatible:m@http://127.0.0.1:9/v1"), passed) == passed
    assert passed not in scrub(f"refused {passed}")


# --- what the cache key must tell apart -------------------------------------------------------------


def test_the_whole_base_url_keys_answers_with_only_its_secrets_hashed():
    """Deployments told apart by their URL's query never share answers or endpoint findings; an IPv6 host keeps
    its brackets; credentials (userinfo, key/token/sig-like query values) key by a hash, never shown."""
    azure = "https://h.example/openai/deployments/a?api-version={}"
    ids = {parse_model(f"openai-compatible:m@{azure.format(v)}").id for v in ("2024-02-01", "2025-01-01")}
    assert len(ids) == 2 and all("api-version=20" in i for i in ids)
    identities = {
        Classifier(LABELS, f"openai-compatible:m@{azure.format(v)}", cache=False).method.identity
        for v in ("2024-02-01", "2025-01-01")
    }
    assert len(identities) == 2
    assert parse_model("openai-compatible:m@http://[::1]:8000/v1").id == "openai-compatible:m@http://[::1]:8000/v1"
    assert parse_model("openai-compatible:m@http://127.0.0.1:9/v1").id == "openai-compatible:m@http://127.0.0.1:9/v1"
    with_secrets = "http://alice:pw-SECRET-{0}@h.example/v1?api-version=1&api-key=k-SECRET-{0}&sig=s-SECRET-{0}"
    first, second, again = (parse_model(f"openai-compatible:m@{with_secrets.format(n)}").id for n in (1, 2, 1))
    assert first != second and first == again
    assert "SECRET" not in first + second and "alice" not in first and "api-version=1" in first
    assert key_variable(parse_model("openai-compatible:m@https://u:p@api.openai.com/v1").id) == "OPENAI_API_KEY"


def test_openai_base_url_is_part_of_the_cache_key(server_factory, sample_rows, cache_dir, monkeypatch):
    first, second = server_factory(), server_factory()
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    texts = [r["text"] for r in sample_rows[:4]]
    monkeypatch.setenv("OPENAI_BASE_URL", first.base_url)
    Classifier(LABELS, "openai:gpt-4o-mini", cache=cache_dir).classify(texts)
    monkeypatch.setenv("OPENAI_BASE_URL", second.base_url)
    clf = Classifier(LABELS, "openai:gpt-4o-mini", cache=cache_dir)
    clf.classify(texts)
    assert second.log.requests > 0 and clf.report.cache_hits == 0


def test_a_user_supplied_llm_is_part_of_the_cache_key(server_factory, sample_rows, cache_dir):
    from langchain_openai import ChatOpenAI

    server = server_factory()
    texts = [r["text"] for r in sample_rows[:4]]
    for temperature in (0.0, 1.0):
        llm = ChatOpenAI(model="gpt-test", base_url=server.base_url, api_key="x", temperature=temperature)
        clf = Classifier(LABELS, model_at(server), llm=llm, cache=cache_dir)
        clf.classify(texts)
    assert clf.report.cache_hits == 0 and server.log.requests == 2
    again = Classifier(LABELS, model_at(server), llm=llm, cache=cache_dir)
    again.classify(texts)
    assert again.report.cache_hits == 4  # the same llm is still served from the cache


def test_the_encoder_behind_similar_examples_is_part_of_the_cache_key(sample_rows, tmp_path, monkeypatch):
    import promptclf.methods.embeddings as embeddings

    pool = sample_rows[:20]
    original = embeddings.minilm_path()
    before = Classifier(
        LABELS, "openai-compatible:m@http://127.0.0.1:9/v1", examples=pool, example_selection="similar", cache=False
    ).method.identity
    other = tmp_path / "model"  # a different encoder in a directory of the same name
    other.mkdir()
    for f in original.iterdir():
        (other / f.name).symlink_to(f)
    (other / "config.json").unlink()
    (other / "config.json").write_text((original / "config.json").read_text().replace("{", '{"note": "v2",', 1))
    monkeypatch.setattr(embeddings, "minilm_path", lambda: other)
    embeddings.default_encoder.cache_clear()
    try:
        after = Classifier(
            LABELS, "openai-compatible:m@http://127.0.0.1:9/v1", examples=pool, example_selection="similar", cache=False
        ).method.identity
    finally:
        embeddings.default_encoder.cache_clear()
    assert before != after


def test_a_model_directorys_digest_follows_its_content_not_its_install(tmp_path):
    """Cache keys name the encoder by this digest: a reinstall, another machine or a copy of the same model
    must keep them (a shared cache is shared across machines), another model or retrained weights must not."""
    import shutil

    from promptclf.cache.store import model_digest

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"hidden_size": 384}')
    weights = bytearray(os.urandom(8 * 2**20))
    (model / "model.safetensors").write_bytes(weights)
    digest = model_digest(model)
    for f in model.iterdir():
        os.utime(f, ns=(10**18, 10**18))  # installed at another time
    copy = tmp_path / "elsewhere" / "model"
    shutil.copytree(model, copy, copy_function=shutil.copyfile)  # new files, new times
    assert model_digest(model) == digest == model_digest(copy)
    retrained = bytearray(weights)
    retrained[5 * 2**20 + 3] ^= 1  # one tensor retrained: a few bytes differ
    (copy / "model.safetensors").write_bytes(retrained)
    assert model_digest(copy) != digest
    (copy / "model.safetensors").write_bytes(weights)
    (copy / "config.json").write_text('{"hidden_size": 385}')
    assert model_digest(copy) != digest


def test_the_embedded_models_version_is_part_of_the_cache_key(monkeypatch):
    import promptclf.methods.local as local

    current = local.embedded_model_dir()
    before = {model: Classifier(LABELS, model, cache=False).method.identity for model in ("local", "offline")}
    monkeypatch.setattr(local, "embedded_version", lambda: "0.0-test")
    (home() / "models").mkdir(exist_ok=True)
    (home() / "models" / f"{local.EMBEDDED}-0.0-test").symlink_to(current)  # "converted" already
    after = {model: Classifier(LABELS, model, cache=False).method.identity for model in ("local", "offline")}
    assert before["local"] != after["local"] and "0.0-test" in after["local"]
    assert before["offline"] != after["offline"]  # the default combines the embedded LLM's answers


def test_int8_that_fell_back_to_float32_is_keyed_as_float32(sample_rows, monkeypatch):
    from promptclf.methods.local import load_causal_lm

    pool = sample_rows[:20]
    # "local": quantize is its option (the offline default, which this test once used, never took it)
    float32 = Classifier(LABELS, "local", examples=pool, quantize=None, cache=False).method.identity
    load_causal_lm.cache_clear()
    monkeypatch.setitem(sys.modules, "torch.ao.quantization", None)  # a torch without eager-mode quantisation
    try:
        fell_back = Classifier(LABELS, "local", examples=pool, quantize="int8", cache=False).method.identity
    finally:
        load_causal_lm.cache_clear()
    assert fell_back == float32 and "quantize=None" in float32


# --- the tests' own cache -------------------------------------------------------------------------------


def test_tests_never_write_to_the_users_promptclf_home(tmp_path_factory):
    assert Path(os.environ["PROMPTCLF_HOME"]) == home()
    assert home().is_relative_to(tmp_path_factory.getbasetemp())


# --- identities are pure --------------------------------------------------------------------------------


def test_identities_load_no_model_and_ask_no_server(sample_rows, monkeypatch):
    """An identity is read before anything is labelled (the cache key): it names the encoder, the embedded
    model and a self-hosted server's layout rule without loading a model or asking the server."""
    import promptclf.methods.chat as chat
    import promptclf.methods.embeddings as embeddings

    def refuse(*args, **kwargs):
        raise AssertionError("an identity loaded a model or asked a server")

    examples = sample_rows[:8]
    built = {
        "embed": Classifier(LABELS, "embed", examples=examples, cache=False).method,
        "offline": Classifier(LABELS, "offline", examples=examples, cache=False).method,
        "chat": Classifier(LABELS, "openai-compatible:m@http://127.0.0.1:9/v1", cache=False).method,
    }
    monkeypatch.setattr(embeddings, "default_encoder", refuse)
    monkeypatch.setattr(embeddings.Encoder, "__init__", refuse)
    monkeypatch.setattr(chat.ChatLabeler, "_listed_without_system_role", refuse)
    identities = {name: method.identity for name, method in built.items()}
    assert identities["chat"].startswith("chat|openai-compatible:m@http://127.0.0.1:9/v1|")
    assert all(identities.values())
