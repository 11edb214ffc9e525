"""Variants: graphs derived from the checked fp32 graph (int8 for CPUs; the TensorRT 8 profile and fp16
for GPUs), each checked against it before it is written. variants.stage is the one door to them."""
