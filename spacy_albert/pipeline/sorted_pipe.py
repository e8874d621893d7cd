"""Length-sorted batching for `nlp.pipe`: components that run their own ALBERT encoder take
`sort_buffer` batches of the stream at a time, sort them by length, and encode them in
groups of docs of similar length, which also fill the encoder's matmuls (`batch_size` docs
at least, more while their estimated positions stay within `max_batch_pieces`: a matmul
over a few hundred rows runs well below the speed of one over a few thousand). The docs are
handed on in their original order."""

from __future__ import annotations

from typing import Iterable, Iterator, List, Optional, Sequence

from spacy.tokens import Doc
from spacy.util import minibatch
from thinc.api import Model

# A conservative guess of pieces per character (English averages about one piece per 4-5
# characters): a group is cut when its guessed positions would pass `max_batch_pieces`.
PIECES_PER_CHAR = 1 / 3


def _own_encoder(model: Model) -> Optional[Model]:
    return next((node for node in model.walk() if node.name == "albert_transformer"), None)


def sort_buffer_of(model: Model) -> int:
    """How many batches `pipe` sorts together: the encoder's `sort_buffer` setting, or 1 for
    a model without its own encoder (a listener reads what the shared component stored)."""
    encoder = _own_encoder(model)
    return int(encoder.attrs["settings"]["sort_buffer"]) if encoder is not None else 1


def length_groups(lengths: Sequence[int], batch_size: int, max_positions: int) -> List[List[int]]:
    """Indices of docs (longest first), cut into groups of at least `batch_size` docs that
    grow while their guessed positions (characters * PIECES_PER_CHAR + [CLS]/[SEP]) fit in
    `max_positions`."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__, reverse=True)
    groups: List[List[int]] = []
    current: List[int] = []
    positions = 0.0
    for i in order:
        guess = lengths[i] * PIECES_PER_CHAR + 2
        if len(current) >= batch_size and positions + guess > max_positions:
            groups.append(current)
            current, positions = [], 0.0
        current.append(i)
        positions += guess
    if current:
        groups.append(current)
    return groups


class LengthSortedPipe:
    """`pipe` for TrainablePipe components whose model runs an ALBERT encoder."""

    def pipe(self, stream: Iterable[Doc], *, batch_size: int = 128) -> Iterator[Doc]:
        """Annotate the docs of `stream` (in order). With `sort_buffer` > 1, docs are taken
        `sort_buffer` batches at a time and encoded longest first, in groups of at least
        `batch_size` docs (more when they are short); with 1, batch by batch as they come.
        Docs of a group that fails go to the component's error handler and are not yielded
        (as in spaCy)."""
        error_handler = self.get_error_handler()
        encoder = _own_encoder(self.model)
        buffer_batches = sort_buffer_of(self.model)
        max_positions = int(encoder.attrs["settings"]["max_batch_pieces"]) if encoder is not None else 0
        for buffer in minibatch(stream, size=batch_size * buffer_batches):
            if buffer_batches > 1:
                groups = length_groups([len(doc.text) for doc in buffer], batch_size, max_positions)
            else:
                groups = [list(range(i, min(i + batch_size, len(buffer)))) for i in range(0, len(buffer), batch_size)]
            failed: set[int] = set()
            for indices in groups:
                docs = [buffer[i] for i in indices]
                try:
                    self.set_annotations(docs, self.predict(docs))
                except Exception as e:
                    error_handler(self.name, self, docs, e)
                    failed.update(indices)
            yield from (doc for i, doc in enumerate(buffer) if i not in failed)
