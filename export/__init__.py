"""Torch in, bundle out: folding, quantization, fake-quant evaluation, NIR and ONNX export."""
