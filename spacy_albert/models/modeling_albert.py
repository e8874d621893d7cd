"""ALBERT in PyTorch: the encoder and every head of the reference, in one file.

Parameter names follow the reference implementation one to one, so Hugging Face state
dicts load without renaming. Two ideas make ALBERT "lite":

* factorized embeddings: tokens are embedded in E dimensions and projected to the hidden
  size H by `encoder.embedding_hidden_mapping_in`;
* cross-layer sharing: `num_hidden_layers` passes run over only `num_hidden_groups` groups
  of `inner_group_num` layers each, so layer i reuses the weights of group
  `int(i / (num_hidden_layers / num_hidden_groups))`.

Attention runs through `torch.nn.functional.scaled_dot_product_attention` (`packed.sdpa`); an explicit
softmax path is used only when attention weights or a head mask are asked for.

Every layer runs as three steps shared by both layouts: `AlbertAttention.project_qkv` (query,
key and value in one matmul), attention (`AlbertAttention.attend` over a padded
[batch, sequence] batch, or `packed.bucket_attention` over packed windows), and
`AlbertLayer.post_attention` (attention output + residual LayerNorm, the feed-forward block
and its residual LayerNorm). `AlbertModel.forward` is the padded layout (the reference's);
`AlbertModel.packed_hidden_states` the padding-free one that the spaCy encoder runs. Both take
`inference_buffers` (None: on when autograd is off and autocast is not active), which runs the
inference fast path: reused intermediate buffers and in-place activation (see `packed`).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn
from torch.nn import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from torch.nn import functional as F

from .activations import get_activation
from .checkpoint import PreTrainedMixin
from .configuration import AlbertConfig
from .packed import Bucket, ForwardState, InferenceBuffers, bucket_attention, concatenated_qkv, sdpa
from .outputs import (
    AlbertForPreTrainingOutput,
    BaseModelOutputWithPooling,
    MaskedLMOutput,
    MultipleChoiceModelOutput,
    QuestionAnsweringModelOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)

Tensor = torch.Tensor


# ---------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------
class AlbertEmbeddings(nn.Module):
    """Word + token type (+ absolute position) embeddings of size E, then LayerNorm."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.embedding_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_embedding_type = config.position_embedding_type
        positions = torch.arange(config.max_position_embeddings).expand((1, -1))
        self.register_buffer("position_ids", positions, persistent=False)

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
    ) -> Tensor:
        """Embeddings [..., E] of ids of any shape ([batch, sequence], or [n_positions] of
        packed windows with their `position_ids`)."""
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)
        if token_type_ids is None:  # all type 0: row 0, added without a lookup
            embeddings = inputs_embeds + self.token_type_embeddings.weight[0]
        else:
            embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids)
        if self.position_embedding_type == "absolute":
            if position_ids is None:
                position_ids = self.position_ids[0, : inputs_embeds.shape[-2]]
            embeddings = embeddings + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(embeddings))


class AlbertAttention(nn.Module):
    """Multi-head self-attention with the residual connection and LayerNorm."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.attention_dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.output_dropout = nn.Dropout(config.hidden_dropout_prob)
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.position_embedding_type = config.position_embedding_type
        if self.position_embedding_type != "absolute":
            self.max_position_embeddings = config.max_position_embeddings
            self.distance_embedding = nn.Embedding(2 * config.max_position_embeddings - 1, self.attention_head_size)

    def _relative_scores(self, query: Tensor, key: Tensor) -> Tensor:
        """The additive scores of relative position embeddings (Shaw et al. / Huang et al.)."""
        seq = query.shape[2]
        positions = torch.arange(seq, dtype=torch.long, device=query.device)
        distance = positions.view(-1, 1) - positions.view(1, -1)
        embedding = self.distance_embedding(distance + self.max_position_embeddings - 1).to(query.dtype)
        scores = torch.einsum("bhld,lrd->bhlr", query, embedding)
        if self.position_embedding_type == "relative_key_query":
            scores = scores + torch.einsum("bhrd,lrd->bhlr", key, embedding)
        return scores

    def project_qkv(self, hidden_states: Tensor, state: Optional[ForwardState] = None) -> Tensor:
        """Query, key and value projections in one matmul: [..., 3 * all_head_size] (the
        concatenated weights are built once per forward pass, as ALBERT reuses them in every
        pass; with inference buffers the result is written into a reused buffer)."""
        if hasattr(self, "qkv"):  # the fused int8 layer of a quantized encoder
            return self.qkv(hidden_states)
        weights = state.fused_qkv(self) if state is not None else concatenated_qkv(self)
        if weights is None:  # not plain linear layers
            return torch.cat([self.query(hidden_states), self.key(hidden_states), self.value(hidden_states)], dim=-1)
        weight, bias = weights
        buffers = state.buffers if state is not None else None
        if buffers is None:
            return F.linear(hidden_states, weight, bias)
        flat = hidden_states.reshape(-1, hidden_states.shape[-1])
        out = torch.addmm(bias, flat, weight.t(), out=buffers.get("qkv", flat.shape[0], flat, weight.shape[0]))
        return out.view(*hidden_states.shape[:-1], weight.shape[0])

    def attend(
        self,
        qkv: Tensor,
        attention_mask: Optional[Tensor] = None,
        head_mask: Optional[Tensor] = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """Attention over a padded batch: `qkv` [batch, seq, 3 * all_head_size] in, the
        context [batch, seq, all_head_size] and (when asked for) the attention weights out."""
        batch, seq = qkv.shape[:2]
        heads, head_size = self.num_attention_heads, self.attention_head_size
        query, key, value = qkv.view(batch, seq, 3, heads, head_size).permute(2, 0, 3, 1, 4).unbind(0)
        bias = attention_mask
        if self.position_embedding_type != "absolute":
            relative = self._relative_scores(query, key)
            bias = relative if bias is None else bias + relative
        probs = None
        if output_attentions or head_mask is not None:
            scores = torch.matmul(query, key.transpose(-1, -2)) / math.sqrt(head_size)
            if bias is not None:
                scores = scores + bias
            probs = self.attention_dropout(F.softmax(scores, dim=-1))
            if head_mask is not None:
                probs = probs * head_mask
            context = torch.matmul(probs, value)
        else:
            dropout = self.attention_dropout.p if self.training else 0.0
            context = sdpa(query, key, value, bias, dropout)
        return context.transpose(1, 2).flatten(2), probs

    def attend_packed(
        self, qkv: Tensor, buckets: Sequence[Bucket], buffers: Optional[InferenceBuffers] = None
    ) -> Tensor:
        """Attention over packed windows: `qkv` [n_positions, 3 * all_head_size] in, the
        context [n_positions, all_head_size] out (see `packed.bucket_attention`)."""
        dropout = self.attention_dropout.p if self.training else 0.0
        return bucket_attention(qkv, buckets, self.num_attention_heads, self.attention_head_size, dropout, buffers)

    def output(self, hidden_states: Tensor, context: Tensor, buffers: Optional[InferenceBuffers] = None) -> Tensor:
        """The output projection, the residual connection and LayerNorm."""
        projected = self.output_dropout(self.dense(context))
        if buffers is not None:  # no autograd: the residual is added in place
            return self.LayerNorm(projected.add_(hidden_states))
        return self.LayerNorm(hidden_states + projected)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Optional[Tensor] = None,
        head_mask: Optional[Tensor] = None,
        output_attentions: bool = False,
    ) -> tuple[Tensor, Optional[Tensor]]:
        context, probs = self.attend(self.project_qkv(hidden_states), attention_mask, head_mask, output_attentions)
        return self.output(hidden_states, context), probs


class AlbertLayer(nn.Module):
    """Attention block, then the feed-forward block with its residual LayerNorm."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.chunk_size_feed_forward = config.chunk_size_feed_forward
        self.full_layer_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = AlbertAttention(config)
        self.ffn = nn.Linear(config.hidden_size, config.intermediate_size)
        self.ffn_output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.activation = get_activation(config.hidden_act)

    def feed_forward(self, hidden_states: Tensor) -> Tensor:
        return self.ffn_output(self.activation(self.ffn(hidden_states)))

    def _feed_forward_inference(self, hidden_states: Tensor, buffers: InferenceBuffers) -> Tensor:
        """`feed_forward` without autograd, on [rows, H]: the intermediate goes into a reused
        buffer and the activation runs in place (the same arithmetic as the module calls)."""
        ffn = self.ffn
        if type(ffn) is nn.Linear and ffn.bias is not None:
            hidden = buffers.get("ffn", hidden_states.shape[0], hidden_states, ffn.out_features)
            torch.addmm(ffn.bias, hidden_states, ffn.weight.t(), out=hidden)
        else:
            hidden = ffn(hidden_states)
        if buffers.inplace_activation is not None:
            torch.ops.aten.gelu_(hidden, approximate=buffers.inplace_activation)
        else:
            hidden = self.activation(hidden)
        return self.ffn_output(hidden)

    def post_attention(
        self, hidden_states: Tensor, context: Tensor, buffers: Optional[InferenceBuffers] = None
    ) -> Tensor:
        """Everything after attention, position by position (any leading shape): the attention
        output + residual LayerNorm, then the feed-forward block (in chunks of
        `chunk_size_feed_forward` positions when set) + residual LayerNorm."""
        attention_output = self.attention.output(hidden_states, context, buffers)
        chunk = self.chunk_size_feed_forward
        if buffers is not None:
            flat = attention_output.reshape(-1, attention_output.shape[-1])
            outputs = [self._feed_forward_inference(part, buffers) for part in (flat.split(chunk) if chunk else [flat])]
            ffn_output = outputs[0] if len(outputs) == 1 else torch.cat(outputs)
            return self.full_layer_layer_norm(ffn_output.view(attention_output.shape).add_(attention_output))
        if chunk:
            parts = attention_output.split(chunk, dim=-2)
            ffn_output = torch.cat([self.feed_forward(part) for part in parts], dim=-2)
        else:
            ffn_output = self.feed_forward(attention_output)
        return self.full_layer_layer_norm(ffn_output + attention_output)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Optional[Tensor] = None,
        head_mask: Optional[Tensor] = None,
        output_attentions: bool = False,
        state: Optional[ForwardState] = None,
    ) -> tuple[Tensor, Optional[Tensor]]:
        """The padded layout: hidden states [batch, seq, H]."""
        state = ForwardState() if state is None else state
        qkv = self.attention.project_qkv(hidden_states, state)
        context, probs = self.attention.attend(qkv, attention_mask, head_mask, output_attentions)
        return state.post_attention(self, hidden_states, context), probs

    def packed_forward(
        self, hidden_states: Tensor, buckets: Sequence[Bucket], state: Optional[ForwardState] = None
    ) -> Tensor:
        """The packed layout: hidden states [n_positions, H] of windows packed one after the
        other, attention per bucket of windows."""
        state = ForwardState() if state is None else state
        context = self.attention.attend_packed(self.attention.project_qkv(hidden_states, state), buckets, state.buffers)
        return state.post_attention(self, hidden_states, context)


class AlbertLayerGroup(nn.Module):
    """`inner_group_num` layers with their own weights, run one after the other."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.albert_layers = nn.ModuleList([AlbertLayer(config) for _ in range(config.inner_group_num)])


class AlbertTransformer(nn.Module):
    """The E -> H projection and `num_hidden_layers` passes over the shared layer groups."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.config = config
        self.embedding_hidden_mapping_in = nn.Linear(config.embedding_size, config.hidden_size)
        self.albert_layer_groups = nn.ModuleList([AlbertLayerGroup(config) for _ in range(config.num_hidden_groups)])

    def passes(self) -> Iterator[tuple[int, nn.ModuleList]]:
        """(group index, its layers) for each of the `num_hidden_layers` passes: pass i runs
        the inner layers of group int(i / (num_hidden_layers / num_hidden_groups))."""
        n_layers, n_groups = self.config.num_hidden_layers, self.config.num_hidden_groups
        for i in range(n_layers):
            group_idx = int(i / (n_layers / n_groups))
            yield group_idx, self.albert_layer_groups[group_idx].albert_layers

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Optional[Tensor] = None,
        head_mask: Optional[list[Optional[Tensor]]] = None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        *,
        inference_buffers: Optional[bool] = None,
    ) -> tuple[Tensor, Optional[tuple[Tensor, ...]], Optional[tuple[Tensor, ...]]]:
        hidden_states = self.embedding_hidden_mapping_in(hidden_states)
        state = ForwardState.create(hidden_states, self.config.hidden_act, inference_buffers)
        all_hidden_states = (hidden_states,) if output_hidden_states else None
        all_attentions: Optional[tuple[Tensor, ...]] = () if output_attentions else None
        layers_per_group = int(self.config.num_hidden_layers / self.config.num_hidden_groups)
        for group_idx, layers in self.passes():
            # As in the reference, inner layer j of a group takes the head mask of layer
            # group_idx * layers_per_group + j.
            group_mask = head_mask[group_idx * layers_per_group : (group_idx + 1) * layers_per_group] if head_mask else []
            for j, layer in enumerate(layers):
                mask_j = group_mask[j] if j < len(group_mask) else None
                hidden_states, probs = layer(hidden_states, attention_mask, mask_j, output_attentions, state=state)
                if all_attentions is not None:
                    all_attentions = all_attentions + (probs,)
            if all_hidden_states is not None:
                all_hidden_states = all_hidden_states + (hidden_states,)
        return hidden_states, all_hidden_states, all_attentions

    def packed(
        self,
        embeddings: Tensor,
        buckets: Sequence[Bucket],
        n_layers: int = 1,
        *,
        inference_buffers: Optional[bool] = None,
        compile: bool = False,
    ) -> Tensor:
        """The packed layout: embeddings [n_positions, E] of packed windows in, the last
        `n_layers` hidden states [n_layers, n_positions, H] out (the projected embeddings
        count as hidden state 0, as in `output_hidden_states`)."""
        hidden_states = self.embedding_hidden_mapping_in(embeddings)
        state = ForwardState.create(hidden_states, self.config.hidden_act, inference_buffers, compile)
        kept: deque[Tensor] = deque([hidden_states], maxlen=n_layers)
        for _, layers in self.passes():
            for layer in layers:
                hidden_states = layer.packed_forward(hidden_states, buckets, state)
            kept.append(hidden_states)
        return torch.stack(list(kept)) if n_layers > 1 else hidden_states.unsqueeze(0)


# ---------------------------------------------------------------------------------------
# Base class
# ---------------------------------------------------------------------------------------
class AlbertPreTrainedModel(PreTrainedMixin, nn.Module):
    """Weight initialisation, weight tying and checkpoint I/O shared by every ALBERT class."""

    config_class = AlbertConfig
    base_model_prefix = "albert"
    # Keys the reference leaves out of checkpoints because they are tied to other weights.
    _tied_weights_keys: tuple[str, ...] = ()

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        if not isinstance(config, AlbertConfig):
            raise TypeError(f"{type(self).__name__} needs an AlbertConfig, got {type(config).__name__}.")
        config.validate()
        self.config = config

    def post_init(self) -> None:
        self.apply(self._init_weights)
        self.tie_weights()

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        elif isinstance(module, AlbertMLMHead):
            module.bias.data.zero_()

    def get_input_embeddings(self) -> nn.Embedding:
        return getattr(self, self.base_model_prefix, self).embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        getattr(self, self.base_model_prefix, self).embeddings.word_embeddings = value

    def get_output_embeddings(self) -> Optional[nn.Linear]:
        predictions = getattr(self, "predictions", None)
        return predictions.decoder if predictions is not None else None

    def tie_weights(self) -> None:
        """Tie the MLM decoder to the word embeddings (and its bias to `predictions.bias`)."""
        predictions = getattr(self, "predictions", None)
        if predictions is None:
            return
        if getattr(self.config, "tie_word_embeddings", True):
            predictions.decoder.weight = self.get_input_embeddings().weight
        predictions.decoder.bias = predictions.bias

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    def num_parameters(self, only_trainable: bool = False) -> int:
        """Parameters counted once each, however many layers share them."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not only_trainable)

    def get_head_mask(self, head_mask: Optional[Tensor]) -> Optional[list[Tensor]]:
        """Broadcast a head mask of shape [heads] or [layers, heads] to one mask per layer."""
        if head_mask is None:
            return None
        n_layers = self.config.num_hidden_layers
        if head_mask.dim() == 1:
            head_mask = head_mask[None, None, :, None, None].expand(n_layers, -1, -1, -1, -1)
        elif head_mask.dim() == 2:
            head_mask = head_mask[:, None, :, None, None]
        if head_mask.dim() != 5 or head_mask.shape[0] != n_layers:
            raise ValueError(
                f"head_mask must have shape [num_heads] or [num_hidden_layers={n_layers}, num_heads]; "
                f"got {tuple(head_mask.shape)}."
            )
        return list(head_mask.to(dtype=self.dtype))

    def _return(self, return_dict: Optional[bool], output: object) -> object:
        use_dict = self.config.return_dict if return_dict is None else return_dict
        return output if use_dict else output.to_tuple()


# ---------------------------------------------------------------------------------------
# The bare model
# ---------------------------------------------------------------------------------------
class AlbertModel(AlbertPreTrainedModel):
    """The bare ALBERT encoder: last hidden state and (optionally) the tanh pooler."""

    def __init__(self, config: AlbertConfig, add_pooling_layer: bool = True) -> None:
        super().__init__(config)
        self.embeddings = AlbertEmbeddings(config)
        self.encoder = AlbertTransformer(config)
        if add_pooling_layer:
            self.pooler = nn.Linear(config.hidden_size, config.hidden_size)
            self.pooler_activation = nn.Tanh()
        else:
            self.pooler = None
            self.pooler_activation = None
        self.post_init()

    def check_ids(
        self,
        input_ids: Optional[Tensor | np.ndarray],
        token_type_ids: Optional[Tensor | np.ndarray],
        position_ids: Optional[Tensor | np.ndarray],
        seq_length: int,
    ) -> None:
        """Turn out-of-range ids into clear errors instead of index errors deep in torch (on
        a GPU: device-side asserts). Takes torch tensors (their extremes come back in one
        transfer) or numpy arrays, so that a caller holding its ids on the host checks them
        there, before they go to the device, and runs the forward with `check_inputs=False`."""
        config = self.config
        limit = config.max_position_embeddings
        if position_ids is None and seq_length > limit:
            raise ValueError(
                f"Input of {seq_length} pieces is longer than max_position_embeddings={limit}; "
                "truncate it or split it into windows."
            )
        checks = [
            (t, name, bound)
            for t, name, bound in (
                (input_ids, "input_ids", config.vocab_size),
                (token_type_ids, "token_type_ids", config.type_vocab_size),
                (position_ids, "position_ids", limit),
            )
            if t is not None and (t.numel() if isinstance(t, Tensor) else t.size)
        ]
        if not checks:
            return
        tensors = [t for t, _, _ in checks if isinstance(t, Tensor)]
        on_device = iter(torch.stack([torch.stack([t.min(), t.max()]) for t in tensors]).tolist() if tensors else [])
        extremes = [next(on_device) if isinstance(t, Tensor) else (int(t.min()), int(t.max())) for t, _, _ in checks]
        for (_, name, bound), (low, high) in zip(checks, extremes):
            if low < 0 or high >= bound:
                what = {"input_ids": "config.vocab_size", "token_type_ids": "config.type_vocab_size"}
                raise ValueError(
                    f"{name} must lie in [0, {bound}) ({what.get(name, 'max_position_embeddings')}), "
                    f"but range over [{low}, {high}]. Does the tokenizer belong to this model?"
                )

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        head_mask: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        *,
        inference_buffers: Optional[bool] = None,
        check_inputs: bool = True,
    ) -> Union[BaseModelOutputWithPooling, tuple]:
        """The reference's forward over a padded batch. `inference_buffers` picks the inference
        fast path (None: on when autograd is off and autocast is not active). `check_inputs`
        False: the caller has checked the ids (`check_ids`, on the host) and passes an
        `attention_mask` only when it masks something, so nothing is read back from the device
        (no host sync): an all-ones mask is then applied rather than dropped."""
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("Pass either input_ids or inputs_embeds, not both.")
        if input_ids is None and inputs_embeds is None:
            raise ValueError("Pass input_ids or inputs_embeds.")
        shape = input_ids.shape if input_ids is not None else inputs_embeds.shape[:-1]
        if len(shape) != 2:
            raise ValueError(f"input_ids must have shape [batch, sequence]; got {tuple(shape)}.")
        if check_inputs:
            self.check_ids(input_ids, token_type_ids, position_ids, shape[1])
            if attention_mask is not None and bool(attention_mask.all()):
                attention_mask = None  # nothing masked: attention runs without a mask

        embedding_output = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)
        extended_mask = None
        if attention_mask is not None:
            if attention_mask.shape != shape:
                raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)}, inputs {tuple(shape)}.")
            dtype = embedding_output.dtype
            extended_mask = (1.0 - attention_mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        sequence_output, hidden_states, attentions = self.encoder(
            embedding_output,
            extended_mask,
            head_mask=self.get_head_mask(head_mask),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            inference_buffers=inference_buffers,
        )
        pooled_output = None
        if self.pooler is not None:
            pooled_output = self.pooler_activation(self.pooler(sequence_output[:, 0]))
        output = BaseModelOutputWithPooling(sequence_output, pooled_output, hidden_states, attentions)
        return self._return(return_dict, output)

    def packed_hidden_states(
        self,
        input_ids: Tensor,
        position_ids: Tensor,
        token_type_ids: Optional[Tensor],
        buckets: Sequence[Bucket],
        n_layers: int = 1,
        *,
        inference_buffers: Optional[bool] = None,
        compile: bool = False,
        check_inputs: bool = True,
    ) -> Tensor:
        """The padding-free forward: windows packed one after the other, `input_ids`,
        `position_ids` and `token_type_ids` (None: all type 0) of shape [n_positions], and
        `buckets` the attention buckets that tile them (see `packed`; as built by
        `spacy_albert.layers.windows`). Returns the last `n_layers` hidden states
        [n_layers, n_positions, H]: each window's states are those `forward` gives it alone.

        `inference_buffers`: None (on when autograd is off and autocast is not active), True or
        False. `compile`: run the post-attention blocks through torch.compile (not with
        inference buffers). `check_inputs` False: the caller has checked the ids (`check_ids`,
        on the host), so nothing is read back from the device. Needs absolute position
        embeddings (relative ones run padded)."""
        config = self.config
        if config.position_embedding_type != "absolute":
            raise ValueError(
                f"The packed layout needs absolute position embeddings, not {config.position_embedding_type!r}: "
                "run the windows padded (AlbertModel.forward)."
            )
        if input_ids.dim() != 1 or position_ids.shape != input_ids.shape:
            raise ValueError(
                f"Packed input_ids and position_ids must both have shape [n_positions]; got {tuple(input_ids.shape)} "
                f"and {tuple(position_ids.shape)}."
            )
        if token_type_ids is not None and token_type_ids.shape != input_ids.shape:
            raise ValueError(f"token_type_ids has shape {tuple(token_type_ids.shape)}, input_ids {tuple(input_ids.shape)}.")
        if not 1 <= n_layers <= config.num_hidden_layers + 1:
            raise ValueError(f"n_layers={n_layers}: choose 1 to {config.num_hidden_layers + 1}.")
        if check_inputs:
            self.check_ids(input_ids, token_type_ids, position_ids, input_ids.shape[0])
        embeddings = self.embeddings(input_ids, token_type_ids, position_ids)
        return self.encoder.packed(embeddings, buckets, n_layers, inference_buffers=inference_buffers, compile=compile)


# ---------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------
class AlbertMLMHead(nn.Module):
    """H -> E dense + activation + LayerNorm, then the decoder tied to the word embeddings."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)
        self.decoder = nn.Linear(config.embedding_size, config.vocab_size)
        self.activation = get_activation(config.hidden_act)
        self.decoder.bias = self.bias

    def forward(self, hidden_states: Tensor) -> Tensor:
        return self.decoder(self.LayerNorm(self.activation(self.dense(hidden_states))))


class AlbertSOPHead(nn.Module):
    """Sentence-order prediction over the pooled output."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__()
        self.dropout = nn.Dropout(config.classifier_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled_output: Tensor) -> Tensor:
        return self.classifier(self.dropout(pooled_output))


def _require_two_labels(config: AlbertConfig, what: str) -> None:
    if config.num_labels != 2:
        raise ValueError(f"This head predicts {what}, so config.num_labels must be 2, not {config.num_labels}.")


class AlbertForPreTraining(AlbertPreTrainedModel):
    """Masked LM + sentence-order prediction, the pretraining objective."""

    _tied_weights_keys = ("predictions.decoder.bias", "predictions.decoder.weight")

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        _require_two_labels(config, "the two sentence orders")
        self.albert = AlbertModel(config)
        self.predictions = AlbertMLMHead(config)
        self.sop_classifier = AlbertSOPHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        head_mask: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        labels: Optional[Tensor] = None,
        sentence_order_label: Optional[Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ) -> Union[AlbertForPreTrainingOutput, tuple]:
        outputs = self.albert(
            input_ids, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            output_attentions, output_hidden_states, return_dict=True,
        )  # fmt: skip
        prediction_scores = self.predictions(outputs.last_hidden_state)
        sop_scores = self.sop_classifier(outputs.pooler_output)
        loss = None
        if labels is not None and sentence_order_label is not None:
            loss_fct = CrossEntropyLoss()
            mlm_loss = loss_fct(prediction_scores.view(-1, self.config.vocab_size), labels.view(-1))
            sop_loss = loss_fct(sop_scores.view(-1, 2), sentence_order_label.view(-1))
            loss = mlm_loss + sop_loss
        output = AlbertForPreTrainingOutput(loss, prediction_scores, sop_scores, outputs.hidden_states, outputs.attentions)
        return self._return(return_dict, output)


class AlbertForMaskedLM(AlbertPreTrainedModel):
    """The masked language modelling head (no pooler)."""

    _tied_weights_keys = ("predictions.decoder.bias", "predictions.decoder.weight")

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.predictions = AlbertMLMHead(config)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        head_mask: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        labels: Optional[Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ) -> Union[MaskedLMOutput, tuple]:
        outputs = self.albert(
            input_ids, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            output_attentions, output_hidden_states, return_dict=True,
        )  # fmt: skip
        logits = self.predictions(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.config.vocab_size), labels.view(-1))
        output = MaskedLMOutput(loss, logits, outputs.hidden_states, outputs.attentions)
        return self._return(return_dict, output)


class AlbertForSequenceClassification(AlbertPreTrainedModel):
    """A linear layer over the pooled output: single-label, multi-label or regression."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def _loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        config = self.config
        if config.problem_type is None:  # inferred on first use, as in the reference
            if self.num_labels == 1:
                config.problem_type = "regression"
            elif labels.dtype in (torch.long, torch.int):
                config.problem_type = "single_label_classification"
            else:
                config.problem_type = "multi_label_classification"
        if config.problem_type == "regression":
            if self.num_labels == 1:
                return MSELoss()(logits.squeeze(), labels.squeeze())
            return MSELoss()(logits, labels)
        if config.problem_type == "single_label_classification":
            return CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        return BCEWithLogitsLoss()(logits, labels)

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        head_mask: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        labels: Optional[Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ) -> Union[SequenceClassifierOutput, tuple]:
        outputs = self.albert(
            input_ids, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            output_attentions, output_hidden_states, return_dict=True,
        )  # fmt: skip
        logits = self.classifier(self.dropout(outputs.pooler_output))
        loss = self._loss(logits, labels) if labels is not None else None
        output = SequenceClassifierOutput(loss, logits, outputs.hidden_states, outputs.attentions)
        return self._return(return_dict, output)


class AlbertForTokenClassification(AlbertPreTrainedModel):
    """A linear layer over every piece's hidden state (e.g. NER)."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=False)
        dropout = config.classifier_dropout_prob
        self.dropout = nn.Dropout(config.hidden_dropout_prob if dropout is None else dropout)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        head_mask: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        labels: Optional[Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ) -> Union[TokenClassifierOutput, tuple]:
        outputs = self.albert(
            input_ids, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            output_attentions, output_hidden_states, return_dict=True,
        )  # fmt: skip
        logits = self.classifier(self.dropout(outputs.last_hidden_state))
        loss = None
        if labels is not None:
            loss = CrossEntropyLoss()(logits.view(-1, self.num_labels), labels.view(-1))
        output = TokenClassifierOutput(loss, logits, outputs.hidden_states, outputs.attentions)
        return self._return(return_dict, output)


class AlbertForQuestionAnswering(AlbertPreTrainedModel):
    """Start and end logits over the pieces, for extractive QA."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        _require_two_labels(config, "start and end logits")
        self.num_labels = config.num_labels
        self.albert = AlbertModel(config, add_pooling_layer=False)
        self.qa_outputs = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        head_mask: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        start_positions: Optional[Tensor] = None,
        end_positions: Optional[Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ) -> Union[QuestionAnsweringModelOutput, tuple]:
        outputs = self.albert(
            input_ids, attention_mask, token_type_ids, position_ids, head_mask, inputs_embeds,
            output_attentions, output_hidden_states, return_dict=True,
        )  # fmt: skip
        logits = self.qa_outputs(outputs.last_hidden_state)
        start_logits, end_logits = (t.squeeze(-1).contiguous() for t in logits.split(1, dim=-1))
        loss = None
        if start_positions is not None and end_positions is not None:
            if start_positions.dim() > 1:
                start_positions = start_positions.squeeze(-1)
            if end_positions.dim() > 1:
                end_positions = end_positions.squeeze(-1)
            # Positions outside the input are clamped to an ignored index.
            ignored = start_logits.size(1)
            loss_fct = CrossEntropyLoss(ignore_index=ignored)
            start_loss = loss_fct(start_logits, start_positions.clamp(0, ignored))
            end_loss = loss_fct(end_logits, end_positions.clamp(0, ignored))
            loss = (start_loss + end_loss) / 2
        output = QuestionAnsweringModelOutput(loss, start_logits, end_logits, outputs.hidden_states, outputs.attentions)
        return self._return(return_dict, output)


class AlbertForMultipleChoice(AlbertPreTrainedModel):
    """One score per choice from the pooled output; inputs are [batch, choices, sequence]."""

    def __init__(self, config: AlbertConfig) -> None:
        super().__init__(config)
        self.albert = AlbertModel(config)
        self.dropout = nn.Dropout(config.classifier_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, 1)
        self.post_init()

    def forward(
        self,
        input_ids: Optional[Tensor] = None,
        attention_mask: Optional[Tensor] = None,
        token_type_ids: Optional[Tensor] = None,
        position_ids: Optional[Tensor] = None,
        head_mask: Optional[Tensor] = None,
        inputs_embeds: Optional[Tensor] = None,
        labels: Optional[Tensor] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ) -> Union[MultipleChoiceModelOutput, tuple]:
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None or reference.dim() < 3:
            raise ValueError("AlbertForMultipleChoice needs inputs of shape [batch, num_choices, sequence].")
        num_choices = reference.shape[1]

        def flat(t: Optional[Tensor]) -> Optional[Tensor]:
            return None if t is None else t.reshape(-1, t.size(-1))

        embeds = None if inputs_embeds is None else inputs_embeds.reshape(-1, *inputs_embeds.shape[-2:])
        outputs = self.albert(
            flat(input_ids), flat(attention_mask), flat(token_type_ids), flat(position_ids), head_mask, embeds,
            output_attentions, output_hidden_states, return_dict=True,
        )  # fmt: skip
        logits = self.classifier(self.dropout(outputs.pooler_output)).view(-1, num_choices)
        loss = CrossEntropyLoss()(logits, labels) if labels is not None else None
        output = MultipleChoiceModelOutput(loss, logits, outputs.hidden_states, outputs.attentions)
        return self._return(return_dict, output)


__all__ = [
    "AlbertPreTrainedModel",
    "AlbertModel",
    "AlbertForPreTraining",
    "AlbertForMaskedLM",
    "AlbertForSequenceClassification",
    "AlbertForTokenClassification",
    "AlbertForQuestionAnswering",
    "AlbertForMultipleChoice",
]
