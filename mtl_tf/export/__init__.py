"""Export: TFLite/LiteRT (float, fp16, dynamic, int8, QAT) and ONNX artifacts with their metadata."""
