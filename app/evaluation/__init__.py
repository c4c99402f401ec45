"""Evaluation of an exported model (ONNX Runtime, scikit-learn, matplotlib; never torch)."""
