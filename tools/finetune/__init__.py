"""`rescore-sidecar finetune`: adapts a cross-encoder to the user's own collection, judged queries,
engine and (optionally) clicks and a larger served teacher, and evaluates it on held-out queries."""
