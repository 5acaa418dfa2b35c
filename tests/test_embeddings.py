"""The two embedding backends: the int8 ONNX export made locally agrees with the fp32 model."""

import numpy as np

from backend.rag.embeddings import OnnxInt8Embedder, SentenceTransformerEmbedder

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
    assert len(exported) == 1 and exported[0].stat().st_size > 10_000_000
    vectors = int8.embed_documents(TEXTS)
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    cosines = (vectors * reference).sum(axis=1)
    assert cosines.min() > 0.97, cosines
    # Same ranking for a query: the plant sentence is the nearest to a question about photosynthesis.
    query = int8.embed_query("How do plants turn sunlight into sugar?")
    assert int(np.argmax(vectors @ query)) == 0
    mtime = exported[0].stat().st_mtime_ns
    OnnxInt8Embedder(tmp_path)  # a second process (or restart) reuses the file
    assert exported[0].stat().st_mtime_ns == mtime and len(list(tmp_path.glob("*.onnx"))) == 1


def test_queries_go_through_the_fp32_onnx_graph_with_the_same_vectors(tmp_path):
    from backend.rag.embeddings import FastQueryEmbedder

    documents = SentenceTransformerEmbedder()
    fast = FastQueryEmbedder(documents, tmp_path)
    query = "How do plants turn sunlight into sugar?"
    assert not list(tmp_path.glob("*.onnx"))  # made on the first query, not before
    vector = fast.embed_query(query)
    assert [p.name.endswith("-fp32.onnx") for p in tmp_path.glob("*.onnx")] == [True]
    assert float(vector @ documents.embed_query(query)) > 0.9999
    assert fast.name == documents.name  # interchangeable with vectors already stored
    assert np.array_equal(fast.embed_documents(TEXTS), documents.embed_documents(TEXTS))
