"""Pool piece states into one vector per spaCy token (mean, first, last or max over the
token's pieces), optionally over a learned softmax mix of the last layers. Tokens with no
piece (whitespace) get a zero vector. All docs of a batch are pooled in one vectorised pass."""

from __future__ import annotations

from typing import Any, Callable, List

import numpy
from thinc.api import Model
from thinc.types import Floats2d

from .data import AlbertDocData

POOLING_MODES = ("mean", "first", "last", "max")


def pool_pieces(mode: str = "mean", layers: int = 1) -> Model[List[AlbertDocData], List[Floats2d]]:
    """A layer from `AlbertDocData` to token vectors; `layers` > 1 mixes the last layers."""
    if mode not in POOLING_MODES:
        raise ValueError(f"pooling={mode!r}; choose one of {POOLING_MODES}.")
    if layers < 1:
        raise ValueError(f"layers must be at least 1, got {layers}.")
    params = {"mix": None, "gamma": None} if layers > 1 else {}
    return Model(
        "albert_pooling",
        _forward,
        init=_init,
        params=params,
        dims={"nO": None},
        attrs={"mode": mode, "layers": layers},
    )


def _init(model: Model, X: Any = None, Y: Any = None) -> None:
    if model.attrs["layers"] > 1:
        model.set_param("mix", model.ops.alloc1f(model.attrs["layers"]))
        model.set_param("gamma", model.ops.asarray1f([1.0]))
    if X:
        model.set_dim("nO", X[0].width, force=True)


def _mix(model: Model, stacks: List[Any]) -> tuple[List[Any], Callable]:
    """Scalar mix of the last k layers: gamma * sum_j softmax(mix)_j * H_j, per doc."""
    ops, k = model.ops, model.attrs["layers"]
    for stack in stacks:
        if stack.shape[0] < k:
            raise ValueError(
                f"The listener mixes {k} layers but the encoder keeps {stack.shape[0]}: "
                f"set output_layers >= {k} on the AlbertTransformer."
            )
    if k == 1:

        def backprop_last(d_mixed: List[Any]) -> List[Any]:
            d_stacks = [ops.xp.zeros(s.shape, dtype="float32") for s in stacks]
            for d_stack, d in zip(d_stacks, d_mixed):
                d_stack[-1] = d
            return d_stacks

        return [s[-1] for s in stacks], backprop_last
    mix, gamma = model.get_param("mix"), model.get_param("gamma")
    weights = ops.softmax(mix)
    selected = [s[-k:] for s in stacks]
    combined = [ops.xp.tensordot(weights, s, axes=(0, 0)) for s in selected]
    mixed = [gamma[0] * c for c in combined]

    def backprop(d_mixed: List[Any]) -> List[Any]:
        d_weights = ops.alloc1f(k)
        d_gamma = ops.alloc1f(1)  # summed where the arrays live: no host read per doc
        d_stacks = []
        for d, s, c, full in zip(d_mixed, selected, combined, stacks):
            d_gamma += (d * c).sum()
            d_weights += gamma[0] * (s * d[None]).sum(axis=(1, 2))
            grad = ops.xp.zeros(full.shape, dtype="float32")
            grad[-k:] = gamma[0] * weights[:, None, None] * d[None]
            d_stacks.append(grad)
        # softmax backprop: dz = w * (dw - sum(w * dw))
        model.inc_grad("mix", weights * (d_weights - (weights * d_weights).sum()))
        model.inc_grad("gamma", d_gamma)
        return d_stacks

    return mixed, backprop


def _forward(model: Model, docs_data: List[AlbertDocData], is_train: bool) -> tuple[List[Floats2d], Callable]:
    ops, xp = model.ops, model.ops.xp
    mode = model.attrs["mode"]
    mixed, backprop_mix = _mix(model, [ops.asarray(d.hidden, dtype="float32") for d in docs_data])
    width = docs_data[0].width if docs_data else (model.get_dim("nO") if model.has_dim("nO") else 0)
    n_pieces = [m.shape[0] for m in mixed]
    n_tokens = [len(d.alignment.lengths) for d in docs_data]
    piece_offsets = [0]
    for n in n_pieces[:-1]:
        piece_offsets.append(piece_offsets[-1] + n)
    X = ops.xp.concatenate(mixed, axis=0) if mixed else ops.alloc2f(0, width)
    lengths_np = [d.alignment.lengths for d in docs_data]
    indices_np = [d.alignment.indices.astype("int64") + off for d, off in zip(docs_data, piece_offsets)]
    lengths_host = numpy.concatenate(lengths_np) if lengths_np else numpy.zeros(0, "int32")
    lengths = ops.asarray1i(lengths_host)
    indices = ops.asarray1i(numpy.concatenate(indices_np) if indices_np else numpy.zeros(0, "int32"))
    G = X[indices]
    Y = ops.alloc2f(int(lengths.shape[0]), width)
    nonzero = ops.asarray1i(numpy.flatnonzero(lengths_host > 0))  # from the host lengths: no device read
    starts = xp.cumsum(lengths) - lengths
    which = None
    if G.shape[0] == 0:  # no token has a piece (empty or whitespace-only docs)
        pass
    elif mode == "mean":
        Y = ops.reduce_sum(G, lengths) / xp.maximum(lengths, 1)[:, None].astype("float32")
    elif mode in ("first", "last"):
        rows = starts[nonzero] if mode == "first" else starts[nonzero] + lengths[nonzero] - 1
        Y[nonzero] = G[rows]
    elif len(nonzero):
        Y_nz, which = ops.reduce_max(G, lengths[nonzero])
        Y[nonzero] = Y_nz

    def backprop(d_tokvecs: List[Floats2d]) -> List[Any]:
        dY = ops.xp.concatenate(d_tokvecs, axis=0) if d_tokvecs else ops.alloc2f(0, width)
        if G.shape[0] == 0:
            dG = ops.alloc2f(*G.shape)
        elif mode == "mean":
            dG = ops.backprop_reduce_sum(dY / xp.maximum(lengths, 1)[:, None].astype("float32"), lengths)
        else:
            dG = ops.alloc2f(*G.shape)
            if mode in ("first", "last"):
                dG[rows] = dY[nonzero]
            elif len(nonzero):
                dG = ops.backprop_reduce_max(ops.xp.ascontiguousarray(dY[nonzero]), which, lengths[nonzero])
        dX = ops.alloc2f(*X.shape)
        ops.scatter_add(dX, indices, dG)
        bounds = numpy.cumsum([0] + n_pieces)
        d_hidden = backprop_mix([dX[bounds[i] : bounds[i + 1]] for i in range(len(n_pieces))])
        return [data.with_arrays(d) for data, d in zip(docs_data, d_hidden)]

    token_bounds = numpy.cumsum([0] + n_tokens)
    return [Y[token_bounds[i] : token_bounds[i + 1]] for i in range(len(n_tokens))], backprop
