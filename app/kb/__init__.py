"""Knowledge bases (issue 9): the pure core of a reindex, sources → text → chunks → vectors → a quality gate.

    formats   extract_text(name, data): a source's text, or why it was skipped (Markdown, text, HTML, PDF)
    chunking  chunk(text, ...): paragraphs → sentences → chunks of at most max_chars with overlap; content ids
    lexical   LexicalEmbedder: the offline default embedder, hashed character n-grams (no key, Chinese-aware)
    gate      evaluate(golden, results, k) and Gate.judge: hit@k, MRR, recall@k, floors and no regression

No module here does I/O: the reindex actor fetches sources, stores generations and switches them; these decide.
"""
