"""Int8 quantization for CPU serving (imports nothing of the project, so predict and deploy
both use it without importing each other)."""

from __future__ import annotations

import warnings
from typing import Any


def quantize_int8(model: Any) -> Any:
    """Dynamic int8 quantization of the linear layers, plus weight-only int8 of the input word
    embeddings (a quantized copy, for CPU).

    The word embeddings are most of a multilingual model (multilingual-e5-small: 96M of its 118M
    parameters, a 250k vocabulary), and dynamic quantization leaves `nn.Embedding` in float32:
    linear layers alone took the e5 export from 449 to 388 MB, with the embeddings 115 MB.
    Each embedding row gets its own scale and offset (`float_qparams`). Only the word
    embeddings: the position and token-type tables are small and are indexed with
    non-contiguous ids, which the quantized lookup refuses.
    """
    import torch
    from torch.ao.quantization import default_dynamic_qconfig, float_qparams_weight_only_qconfig

    engines = torch.backends.quantized.supported_engines
    for engine in ("x86", "fbgemm", "qnnpack"):
        if engine in engines:
            torch.backends.quantized.engine = engine
            break
    model = model.to("cpu").eval()
    spec: dict[Any, Any] = {torch.nn.Linear: default_dynamic_qconfig}
    embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    if type(embeddings) is torch.nn.Embedding:
        name = next(n for n, module in model.named_modules() if module is embeddings)
        spec[name] = float_qparams_weight_only_qconfig
    # torch.ao.quantization is deprecated in favour of torchao (not a dependency here); it still
    # ships and works in torch 2.13. Its deprecation warnings are not the user's to act on.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*torch.ao.quantization is deprecated.*")
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")
        quantize = torch.ao.quantization.quantize_dynamic
        return quantize(model, spec, dtype=torch.qint8)
