"""Token-level truncation and sequence building for one request.

Cross-encoders: the query is cut to its own token budget, then each document is
cut so that query + document + special tokens fit the model's max length; only
the document side is ever cut, so every pair keeps the whole (capped) query.
Bi-encoders: the query and each document are separate sequences, each cut to the
model's max length.

Pure CPU work on the Rust tokenizer; the server runs it off the event loop. Why it is
built this way (each step measured with bench/serving_path.py): one `encode_batch_fast`
call for the query and all documents (no offsets, which nothing here reads), truncation
by list slicing (`Encoding.truncate` builds overflow encodings), and the special tokens
added from a template read off the tokenizer's own post-processor once, instead of one
`post_process` call and three list conversions per pair.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

from rescore_sidecar.sidecar.backends import BI_ENCODER, Backend, TokenizedSequence


@dataclasses.dataclass
class TokenizedRequest:
    """Model inputs for one request, in request order."""

    sequences: list[TokenizedSequence]
    # Per document: whether its text was cut.
    truncated: list[bool]
    query_truncated: bool


# Characters kept per token of budget before tokenizing. Texts are cut to tokens afterwards
# anyway, and tokenizing a multi-megabyte text whole costs about 150 bytes per character
# (an 8 MB document took the process from 1.0 to 2.1 GB); real text has 4-6 characters per
# token, so only a tail that would be cut anyway is dropped.
MAX_CHARS_PER_TOKEN = 64


def _clip(text: str, tokens: int) -> tuple[str, bool]:
    """`text` cut to `tokens * MAX_CHARS_PER_TOKEN` characters, and whether it was cut."""
    limit = max(tokens, 1) * MAX_CHARS_PER_TOKEN
    return (text[:limit], True) if len(text) > limit else (text, False)


@dataclasses.dataclass(frozen=True)
class Template:
    """Special tokens around one or two sequences: prefix A middle B suffix, with their type ids."""

    prefix: list[int]
    middle: list[int]
    suffix: list[int]
    prefix_types: list[int]
    middle_types: list[int]
    suffix_types: list[int]
    type_a: int
    type_b: int

    def build(self, a: list[int], b: list[int] | None) -> TokenizedSequence:
        if b is None:
            return TokenizedSequence(self.prefix + a + self.suffix,
                                     self.prefix_types + [self.type_a] * len(a) + self.suffix_types)
        return TokenizedSequence(self.prefix + a + self.middle + b + self.suffix,
                                 self.prefix_types + [self.type_a] * len(a) + self.middle_types
                                 + [self.type_b] * len(b) + self.suffix_types)


_TEMPLATES: dict[tuple[int, bool], tuple[object, Template | None]] = {}
_PROBES = (("alpha beta gamma", "delta"), ("one", "two three four five six"))


def _find(haystack: list[int], needle: list[int], start: int) -> int:
    for pos in range(start, len(haystack) - len(needle) + 1):
        if haystack[pos:pos + len(needle)] == needle:
            return pos
    return -1


def _read_template(tokenizer, pair: bool) -> Template | None:
    """The post-processor's layout, or None when it is not plain special tokens around the texts."""
    def post(a_text: str, b_text: str | None):
        a = tokenizer.encode(a_text, add_special_tokens=False)
        b = tokenizer.encode(b_text, add_special_tokens=False) if b_text is not None else None
        return a.ids, (b.ids if b is not None else None), tokenizer.post_process(a, b, add_special_tokens=True)

    a_ids, b_ids, full = post(*(_PROBES[0] if pair else (_PROBES[0][0], None)))
    ids, types = full.ids, full.type_ids
    p = _find(ids, a_ids, 0)
    if p < 0:
        return None
    q = _find(ids, b_ids, p + len(a_ids)) if pair else p + len(a_ids)
    if q < 0:
        return None
    end = q + len(b_ids) if pair else q
    a_types, b_types = set(types[p:p + len(a_ids)]), set(types[q:end]) if pair else {0}
    if len(a_types) != 1 or len(b_types) != 1:
        return None
    template = Template(ids[:p], ids[p + len(a_ids):q] if pair else [], ids[end:], types[:p],
                        types[p + len(a_ids):q] if pair else [], types[end:], a_types.pop(), b_types.pop())
    for a_text, b_text in _PROBES:  # the template must reproduce the post-processor exactly
        a_ids, b_ids, full = post(a_text, b_text if pair else None)
        built = template.build(a_ids, b_ids)
        if built.ids != full.ids or built.type_ids != full.type_ids:
            return None
    return template


def template_for(tokenizer, pair: bool) -> Template | None:
    entry = _TEMPLATES.get((id(tokenizer), pair))
    if entry is None or entry[0] is not tokenizer:
        entry = (tokenizer, _read_template(tokenizer, pair))
        _TEMPLATES[(id(tokenizer), pair)] = entry
    return entry[1]


def _encode(tokenizer, texts: list[str]) -> list[list[int]]:
    encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
    return [enc.ids for enc in encode(texts, add_special_tokens=False)]


def tokenize_request(backend: Backend, query: str, documents: Sequence[str],
                     max_query_tokens: int = 0, max_document_tokens: int = 0) -> TokenizedRequest:
    """`max_document_tokens` (0 = none) caps each document's own tokens below what the model fits."""
    tokenizer = backend.tokenizer
    if backend.kind == BI_ENCODER:
        limit = backend.max_length - tokenizer.post_processor.num_special_tokens_to_add(False) \
            if tokenizer.post_processor else backend.max_length
        limits = [limit] + [min(limit, max_document_tokens) if max_document_tokens else limit] * len(documents)
        template = template_for(tokenizer, pair=False)
        if template is None:
            sequences, cut = _tokenize_single_with_post_process(tokenizer, limits, [query, *documents])
            return TokenizedRequest(sequences, truncated=cut[1:], query_truncated=cut[0])
        clipped = [_clip(text, cap) for text, cap in zip([query, *documents], limits)]
        all_ids = _encode(tokenizer, [text for text, _ in clipped])
        cut = [len(ids) > cap or was_clipped for ids, cap, (_, was_clipped) in zip(all_ids, limits, clipped)]
        sequences = [template.build(ids[:cap], None) for ids, cap in zip(all_ids, limits)]
        return TokenizedRequest(sequences, truncated=cut[1:], query_truncated=cut[0])

    query_budget = backend.max_query_tokens
    if max_query_tokens:
        query_budget = min(query_budget, max_query_tokens)
    template = template_for(tokenizer, pair=True)
    if template is None:
        return _tokenize_pairs_with_post_process(tokenizer, backend.max_length, query_budget, query, documents,
                                                 max_document_tokens)
    query, query_clipped = _clip(query, query_budget)
    (query_ids,) = _encode(tokenizer, [query])
    query_truncated = len(query_ids) > query_budget or query_clipped
    query_ids = query_ids[:query_budget]
    specials = tokenizer.post_processor.num_special_tokens_to_add(True) if tokenizer.post_processor else 0
    doc_budget = max(backend.max_length - len(query_ids) - specials, 1)
    if max_document_tokens:
        doc_budget = min(doc_budget, max_document_tokens)
    clipped = [_clip(text, doc_budget) for text in documents]
    doc_ids = _encode(tokenizer, [text for text, _ in clipped])
    truncated = [len(ids) > doc_budget or was_clipped for ids, (_, was_clipped) in zip(doc_ids, clipped)]
    build = template.build
    sequences = [build(query_ids, ids[:doc_budget]) for ids in doc_ids]
    return TokenizedRequest(sequences, truncated=truncated, query_truncated=query_truncated)


# The general path, for post-processors that are not plain special tokens around the texts.

def _cut(encoding, limit: int) -> bool:
    """Truncates in place to `limit` tokens; returns whether anything was cut."""
    if len(encoding) <= limit:
        return False
    encoding.truncate(limit)
    return True


def _tokenize_single_with_post_process(tokenizer, limits: list[int], texts: list[str]) -> tuple[list, list[bool]]:
    clipped = [_clip(text, limit) for text, limit in zip(texts, limits)]
    encodings = tokenizer.encode_batch([text for text, _ in clipped], add_special_tokens=False)
    cut = [_cut(enc, limit) or was_clipped for enc, limit, (_, was_clipped) in zip(encodings, limits, clipped)]
    sequences = []
    for enc in encodings:
        full = tokenizer.post_process(enc, None, add_special_tokens=True)
        sequences.append(TokenizedSequence(full.ids, full.type_ids))
    return sequences, cut


def _tokenize_pairs_with_post_process(tokenizer, max_length: int, query_budget: int, query: str,
                                      documents: Sequence[str], max_document_tokens: int = 0) -> TokenizedRequest:
    query, query_clipped = _clip(query, query_budget)
    query_enc = tokenizer.encode(query, add_special_tokens=False)
    query_truncated = _cut(query_enc, query_budget) or query_clipped
    specials = tokenizer.post_processor.num_special_tokens_to_add(True) if tokenizer.post_processor else 0
    doc_budget = max(max_length - len(query_enc) - specials, 1)
    if max_document_tokens:
        doc_budget = min(doc_budget, max_document_tokens)
    clipped = [_clip(text, doc_budget) for text in documents]
    doc_encs = tokenizer.encode_batch([text for text, _ in clipped], add_special_tokens=False)
    truncated = [_cut(enc, doc_budget) or was_clipped for enc, (_, was_clipped) in zip(doc_encs, clipped)]
    sequences = []
    for enc in doc_encs:
        pair = tokenizer.post_process(query_enc, enc, add_special_tokens=True)
        sequences.append(TokenizedSequence(pair.ids, pair.type_ids))
    return TokenizedRequest(sequences, truncated=truncated, query_truncated=query_truncated)
