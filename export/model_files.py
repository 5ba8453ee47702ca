"""The exported model folder's contract: its file names, tensor names and format version.

Shared by the exporter (zoo.exporting, torch side) and the runtime (this package); plain
constants, no imports.
"""
EMBEDDING_FILE = "embedding.onnx"
FEATUREMAP_FILE = "featuremap.onnx"
TORCHSCRIPT_FILE = "model.ts"
PARTS_FILE = "channel_parts.json"   # written by the evaluation step beside model.safetensors
FORMAT_VERSION = "1"                # bump when metadata keys or graph outputs change meaning

INPUT_NAME = "images"
EMBEDDING_OUTPUT = "embeddings"
FEATURE_OUTPUT = "feature_maps"
HEATMAP_OUTPUT = "heatmaps"
MASK_OUTPUT = "masks"
