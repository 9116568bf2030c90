"""Export to TFLite, ONNX and OpenVINO IR (fp32 / fp16 / int8), calibration, equivalence checks, flatbuffer
compaction and benchmarks; the `export` and `benchmark` verbs are in squeezedet.commands.export."""
