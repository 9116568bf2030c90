"""TFLite export, quantization, equivalence checks, compression and benchmarks."""
