"""Knowledge bases: sources → text → chunks → vectors in pgvector, rebuilt as generations and switched atomically.

The pure core (no I/O):

    formats    extract_text(name, data): a source's text, or why it was skipped (Markdown, text, HTML, PDF)
    chunking   chunk(text, ...): paragraphs → sentences → chunks of at most max_chars with overlap; content ids
    lexical    LexicalEmbedder: the offline default embedder, hashed character n-grams (no key, Chinese-aware)
    gate       evaluate(golden, results, k) and Gate.judge: hit@k, MRR, recall@k, floors and no regression
    lifecycle  which generation may be activated, rolled back to or dropped
    vectors    pgvector's text form of a vector, checked

The storage (``store``): knowledge bases, source states, generations as partitions of ``kb_chunks`` with an
HNSW index each, the embedding cache, search, and the atomic switch (docs/design.md, "Knowledge bases: storage").

The pipeline (docs/design.md, "Knowledge bases: reindex"):

    definition  KnowledgeBase(name, sources=[Folder(...), Urls([...]), S3(...)], ...): checked, to JSON and back
    sources     where documents come from, and which changed since the last reindex
    embedders   Lexical (offline) and RemoteEmbedder (an OpenAI-compatible /embeddings)
    reindex     reindex(pool, kb, ...): scan, embed what changed, build a generation, gate, switch
    dify_sync   a Dify target: push changed documents to a Dify dataset, gate through its retrieve API
    dify_dataset  the Dify Knowledge API client (create/update/delete by text, indexing status, retrieve)

Using them (docs/design.md, "Knowledge bases: use"):

    registry    definitions saved and loaded; KNOWLEDGE_BASES of schedules.py synced at boot (removed: orphaned)
    service     by name: the reindex actor's and punchclock kb's reindex, search and golden scores; ctx.kb's search
"""
