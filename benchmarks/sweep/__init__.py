"""Compatibility sweep: every buildable transformers / timm / torchvision architecture, the standard
checks with no allowances, each verdict compared with a plain-PyTorch oracle. See benchmarks/README.md."""
