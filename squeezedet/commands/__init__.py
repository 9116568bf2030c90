"""CLI verbs of the training side (train, predict, val, anchors, augment-preview)."""


def add_model_arguments(parser) -> None:
    """--weights W [--config C] | --model M.tflite [--threads N]: the model choice shared by predict and val
    (resolved by squeezedet.inference.load_predictor)."""
    g = parser.add_mutually_exclusive_group(required=True)
    g.add_argument("--weights", help="Keras .weights.h5 (config: --config or config.yaml beside it)")
    g.add_argument("--model", help=".tflite with its sidecar .json")
    parser.add_argument("--config", help="config of --weights (for --model: only its data.class_map is used)")
    parser.add_argument("--threads", type=int, default=None, help="TFLite interpreter threads")
