"""The system under test: LoadGen's SUT and QSL over one loaded backend ``Session``.

Queries carry eval-sentence indices. A batcher thread takes the queries LoadGen issues, up to
``max_batch`` of them, waiting at most ``max_wait_s`` after the first for more (the server
scenario's dynamic batching; single-stream uses batches of one, offline takes what is queued).
Each batch is tokenised (when tokenisation is inside the latency), padded to its longest sentence,
run, and its predicted classes are handed back through ``QuerySamplesComplete``: LoadGen times
every query itself, from issue to completion. Nothing here reads a clock for a reported figure.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from harness.data.workload import encode, pad_batch

_STOP = None


class Encoder:
    """Token ids of the eval sentences: made when a batch is served (``inside`` the latency) or when
    LoadGen loads the samples (``outside``)."""

    def __init__(self, tokenizer: Any, texts: Sequence[str], max_length: int, inside: bool) -> None:
        self.tokenizer = tokenizer
        self.texts = texts
        self.max_length = max_length
        self.inside = inside
        self.pad_id = tokenizer.pad_token_id or 0
        self.loaded: dict[int, list[int]] = {}

    def load(self, indices: Sequence[int]) -> None:
        """Tokenise the samples LoadGen loads (``outside``), each once across the cell's LoadGen runs."""
        missing = [int(i) for i in indices if int(i) not in self.loaded]
        if not self.inside and missing:
            token_ids = encode(self.tokenizer, [self.texts[i] for i in missing], "dynamic", self.max_length)
            self.loaded.update(zip(missing, token_ids))

    def unload(self, indices: Sequence[int]) -> None:
        """Kept: an eval split's token ids are small, and the next LoadGen test loads the same samples."""

    def batch(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
        if self.inside:
            token_ids = encode(self.tokenizer, [self.texts[i] for i in indices], "dynamic", self.max_length)
        else:
            token_ids = [self.loaded[int(i)] for i in indices]
        return pad_batch(token_ids, "dynamic", self.pad_id, np.asarray(indices)).arrays


class ServingSystem:
    """Answers LoadGen's queries with ``session``; ``start`` before a test, ``stop`` after the last."""

    def __init__(self, session: Any, encoder: Encoder, max_batch: int, max_wait_s: float) -> None:
        self.session = session
        self.encoder = encoder
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queries: queue.Queue = queue.Queue()
        self.error: BaseException | None = None
        self.batch_sizes: list[int] = []
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._serve, name="harness-batcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.queries.put(_STOP)
            self._thread.join()
            self._thread = None

    # LoadGen's callbacks (called on its threads)
    def issue_queries(self, samples: Sequence[Any]) -> None:
        for sample in samples:
            self.queries.put((sample.id, sample.index))

    def flush_queries(self) -> None:
        """LoadGen has issued its last query: the batcher already serves whatever it holds."""

    def answer(self, indices: Sequence[int]) -> np.ndarray:
        """The predicted class of each sentence, as one batch (also the pilot's and tests' path)."""
        session = self.session
        output = session.run(session.prepare(self.encoder.batch(indices)))
        session.synchronize()
        return np.asarray(session.logits(output)).argmax(axis=-1).astype("<i4")

    def _serve(self) -> None:
        while True:
            first = self.queries.get()
            if first is _STOP:
                return
            batch, stop = self._gather([first])
            self._complete(batch)
            if stop:
                return

    def _gather(self, batch: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], bool]:
        """Up to ``max_batch`` queries: those already queued, then any arriving before the wait ends."""
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                item = self.queries.get(timeout=remaining) if remaining > 0 else self.queries.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _complete(self, batch: list[tuple[int, int]]) -> None:
        """Answer every query of ``batch``, whatever fails: LoadGen waits forever for a missing one."""
        import mlperf_loadgen as lg

        ids = [query_id for query_id, _ in batch]
        classes = np.full(len(batch), -1, dtype="<i4")  # the answer of a failed batch
        try:
            if self.error is None:
                answered = self.answer([index for _, index in batch])
                if answered.shape != (len(batch),):
                    raise ValueError(f"{answered.shape[0]} predictions for a batch of {len(batch)}")
                classes = answered
        except Exception as error:
            self.error = error
        finally:
            self.batch_sizes.append(len(batch))
            # one int32 per sample, alive until QuerySamplesComplete returns (LoadGen copies what it logs)
            responses = [lg.QuerySampleResponse(q, classes[k : k + 1].ctypes.data, 4) for k, q in enumerate(ids)]
            lg.QuerySamplesComplete(responses)
