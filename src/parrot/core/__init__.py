"""What every stage shares: typed configs, Dialogue records, JSONL files, manifests, the
items → model calls → records loop, logging, redaction, shortening, tokenizers and token counts, and model checkpoints."""
