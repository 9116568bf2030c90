"""The CLI verbs, one module each (train, predict, val, kitti-eval, export + benchmark, import, prune,
anchors, augment-preview), over the library layers, which never import them."""


def add_backend_arguments(parser) -> None:
    """--backend / --device / --providers / --cache-dir: which engine runs an exported model. The flags are
    made from squeezedet.backends.options.EngineConfig, whose fields are also the daemon's model keys."""
    from squeezedet.backends.options import add_engine_arguments

    add_engine_arguments(parser)


def backend_options(args):
    """BackendOptions from the arguments of add_backend_arguments (+ --threads)."""
    from squeezedet.backends.options import options_from_args

    return options_from_args(args)


def add_model_arguments(parser) -> None:
    """--weights W [--config C] | --model M [--threads N] [--backend B ...]: the model choice shared by predict
    and val (resolved by squeezedet.inference.load_predictor)."""
    g = parser.add_mutually_exclusive_group(required=True)
    g.add_argument("--weights", help="Keras .weights.h5 (config: --config or config.yaml beside it)")
    g.add_argument("--model", help="exported .tflite, .onnx or OpenVINO .xml with its sidecar .json")
    parser.add_argument("--config", help="config of --weights (for --model: only its data.class_map is used)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads of --model's engine")
    add_backend_arguments(parser)
