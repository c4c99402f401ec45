"""Training, cross-validation and ONNX export of the paper's ResNet classifier (needs the [train] extra).

Nothing under app/ingest, app/inference or app/web may import this package: it pulls in torch.
"""
