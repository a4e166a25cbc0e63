"""`qface export onnx`: a saved Q-Face model as an ONNX graph, checked against torch (`export`). Running an export
needs only onnxruntime and `modeling_qface.model.onnx_qface`."""
