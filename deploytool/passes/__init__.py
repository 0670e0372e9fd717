"""Graph passes on ONNX encoders: one transform per module, one contract (see base.py)."""
