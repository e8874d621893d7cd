"""`WindowedEncoder`: ALBERT over the window chunks of `layers.windows`, with the states
scattered back to pieces (the states of pieces seen by several windows are averaged; no piece
is dropped). Packed chunks run `AlbertModel.packed_hidden_states` (padding-free), padded ones
`AlbertModel` itself: the same layer code, and the reference's states (up to float rounding).

Forked workers (`nlp.pipe(n_process=2)`): a process forked from one whose torch runs several
intra-op threads inherits torch's OpenMP pool, whose first use after the fork can deadlock.
So a child forked while torch had more than one thread runs torch single-threaded (each
worker is one of n_process anyway), set the first time it runs this encoder, and only if
nothing in the child has set torch's thread count by then. The parent, and forked children
that never run the encoder, keep their settings (`_after_fork_in_child`).
"""

from __future__ import annotations

import os
from typing import Any, Optional

import torch
from torch import nn

from ..errors import AlbertError
from ..models.configuration import AlbertConfig
from ..models.modeling_albert import AlbertMLMHead, AlbertModel
from ..models.precision import autocast
from .windows import WindowBatch, batch_tensors, unpack_chunk

# The thread count a forked child inherited from a parent with several torch threads (set in
# the child by the fork hook; None elsewhere, and once the encoder has acted on it).
_FORKED_THREADS: Optional[int] = None


def _after_fork_in_child() -> None:
    """Remember, in a child forked while torch ran several intra-op threads, the inherited
    thread count (reading it starts no thread); `_single_thread_after_fork` acts on it."""
    global _FORKED_THREADS
    threads = torch.get_num_threads()
    _FORKED_THREADS = threads if threads > 1 else None


def _single_thread_after_fork() -> None:
    """In such a child, at its first use of the encoder: torch single-threaded, unless
    something in the child changed the thread count already (its own choice is kept)."""
    global _FORKED_THREADS
    if _FORKED_THREADS is not None:
        if torch.get_num_threads() == _FORKED_THREADS:
            torch.set_num_threads(1)
        _FORKED_THREADS = None


os.register_at_fork(after_in_child=_after_fork_in_child)


class WindowedEncoder(nn.Module):
    """`AlbertModel` (without pooler) over window chunks, scattered back to pieces.

    `precision` picks autocast: "float32" (none), "bfloat16" (CPU or GPU) or "float16" (GPU,
    used with a gradient scaler). Outputs are always float32. `quantize` ("int8" or None)
    records whether the linear layers are dynamically quantized for CPU inference (done when
    the weights load: see `spacy_albert.layers.quantize`). `torch_compile` compiles the position-wise blocks
    (attention output and feed-forward) of packed chunks with `torch.compile` on first use.
    The attribute `inference_buffers` picks the inference fast path of the model (reused
    buffers, in-place activation): None (the default) runs it when autograd is off and
    autocast is not active (and nothing is compiled); True or False force it.

    `mlm_head` adds the reference's masked-LM head (`predictions`, its decoder tied to the word
    embeddings, so it lives in the same module): called with a tensor of hidden states
    [n, width] instead of a batch, the encoder returns their vocabulary logits [n, vocab].
    """

    # the MLM decoder is the word embedding matrix (and `predictions.bias`): stored once
    _tied_weights_keys = ("predictions.decoder.weight", "predictions.decoder.bias")

    def __init__(
        self,
        config: AlbertConfig,
        precision: str = "float32",
        *,
        quantize: Optional[str] = None,
        torch_compile: bool = False,
        mlm_head: bool = False,
    ) -> None:
        super().__init__()
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.predictions: Optional[AlbertMLMHead] = None
        if mlm_head:
            self.predictions = AlbertMLMHead(config)
            self.predictions.apply(self.albert._init_weights)
            self.predictions.bias.data.zero_()
            self.tie_weights()
        self.precision = precision
        self.quantize = quantize
        self.torch_compile = torch_compile
        self.inference_buffers: Optional[bool] = None

    def tie_weights(self) -> None:
        """Tie the MLM decoder to the word embeddings, as the reference does."""
        if self.predictions is not None:
            self.predictions.decoder.weight = self.albert.embeddings.word_embeddings.weight
            self.predictions.decoder.bias = self.predictions.bias

    @property
    def config(self) -> AlbertConfig:
        return self.albert.config

    @property
    def quantized(self) -> bool:
        """Whether the linear layers have been replaced by int8 dynamically quantized ones."""
        return _is_quantized_linear(self.albert.encoder.embedding_hidden_mapping_in)

    def forward(self, batch: WindowBatch | torch.Tensor) -> Any:
        """Hidden states [n_layers, n_pieces, width] of all pieces of the batch, and each
        doc's [CLS] states [n_layers, n_docs, width] (averaged over its windows). Given hidden
        states [n, width] instead, the MLM head's logits [n, vocab] (float32)."""
        if isinstance(batch, torch.Tensor):
            return self.mlm_logits(batch)
        if self.quantize == "int8" and not self.quantized:
            raise AlbertError(
                "This ALBERT encoder has quantize = \"int8\" but float weights: it is quantized when its weights "
                "load (nlp.initialize(), spacy.load), so initialise or load the pipeline before using it."
            )
        _single_thread_after_fork()
        width = self.config.hidden_size
        n_layers = batch.n_layers
        device = self.albert.embeddings.word_embeddings.weight.device
        packed = self.config.position_embedding_type == "absolute"
        # relative position embeddings: packed chunks run the model's own padded path
        chunks = [chunk if packed or not chunk.packed else unpack_chunk(chunk) for chunk in batch.chunks]
        for chunk in chunks:  # the ids are checked on the host: the model never reads them back
            self.albert.check_ids(chunk.input_ids, chunk.token_type_ids, chunk.position_ids, chunk.input_ids.shape[-1])
        # One upload for the whole batch (a copy from the host waits for the device's queue).
        tensors, (counts, doc_windows) = batch_tensors(chunks, (batch.counts, batch.doc_windows), device)
        out = counts.new_zeros((n_layers, counts.shape[0], width))
        cls = counts.new_zeros((n_layers, doc_windows.shape[0], width))
        compiled = self.torch_compile and not self.quantized  # int8 layers run eagerly
        with autocast(self.precision, device.type):
            for chunk, t in zip(chunks, tensors):
                if chunk.packed:
                    states = self.albert.packed_hidden_states(
                        t["input_ids"], t["position_ids"], t["token_type_ids"], t["buckets"], n_layers,
                        inference_buffers=self.inference_buffers, compile=compiled, check_inputs=False,
                    )  # fmt: skip
                else:  # an all-real mask (decided on the host) is no mask
                    mask = None if chunk.attention_mask.all() else t["attention_mask"]
                    states = self._padded_states(t["input_ids"], mask, t["token_type_ids"], n_layers)
                out.index_add_(1, t["target"], states[:, t["source"]].float())
                cls.index_add_(1, t["window_doc"], states[:, t["cls_rows"]].float())
        if batch.overlapping:
            out = out / counts.clamp(min=1).view(1, -1, 1)
        return out, cls / doc_windows.view(1, -1, 1)

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The masked-LM head's vocabulary logits [n, vocab] for hidden states [n, width]."""
        if self.predictions is None:
            raise AlbertError("This ALBERT encoder has no masked-LM head (it was built with mlm_head = false).")
        device = self.albert.embeddings.word_embeddings.weight.device
        with autocast(self.precision, device.type):
            return self.predictions(hidden.to(device)).float()

    def _padded_states(
        self, ids: torch.Tensor, mask: torch.Tensor, types: Optional[torch.Tensor], n_layers: int
    ) -> torch.Tensor:
        result = self.albert(ids, attention_mask=mask, token_type_ids=types, output_hidden_states=n_layers > 1,
                             inference_buffers=self.inference_buffers, check_inputs=False)  # fmt: skip
        if n_layers > 1:
            states = torch.stack(result.hidden_states[-n_layers:])
        else:
            states = result.last_hidden_state.unsqueeze(0)
        return states.reshape(n_layers, -1, states.shape[-1])


def _is_quantized_linear(module: nn.Module) -> bool:
    return type(module).__name__ == "Linear" and type(module).__module__.startswith("torch.ao.nn.quantized")
