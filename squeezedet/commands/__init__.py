"""CLI verbs of the training side (train, predict, val, anchors, augment-preview)."""


def add_backend_arguments(parser) -> None:
    """--backend / --device / --providers / --cache-dir: which engine runs an exported model."""
    from squeezedet.backends import BACKEND_NAMES

    parser.add_argument("--backend", default="auto", choices=BACKEND_NAMES,
                        help="engine for --model (default auto: by file type and what is installed)")
    parser.add_argument("--device", default="CPU", help="openvino device: CPU, GPU, NPU or AUTO (default CPU)")
    parser.add_argument("--providers", default="cpu",
                        help="onnxruntime providers in order, comma-separated: tensorrt,cuda,cpu (default cpu)")
    parser.add_argument("--cache-dir", help="openvino model cache / TensorRT engine cache folder")


def backend_options(args):
    """BackendOptions from the arguments of add_backend_arguments (+ --threads)."""
    from squeezedet.backends import BackendOptions

    providers = tuple(p.strip().lower() for p in args.providers.split(",") if p.strip()) or ("cpu",)
    return BackendOptions(num_threads=getattr(args, "threads", None), device=args.device, providers=providers,
                          cache_dir=args.cache_dir)


def add_model_arguments(parser) -> None:
    """--weights W [--config C] | --model M [--threads N] [--backend B ...]: the model choice shared by predict
    and val (resolved by squeezedet.inference.load_predictor)."""
    g = parser.add_mutually_exclusive_group(required=True)
    g.add_argument("--weights", help="Keras .weights.h5 (config: --config or config.yaml beside it)")
    g.add_argument("--model", help="exported .tflite, .onnx or OpenVINO .xml with its sidecar .json")
    parser.add_argument("--config", help="config of --weights (for --model: only its data.class_map is used)")
    parser.add_argument("--threads", type=int, default=None, help="inference threads of --model's engine")
    add_backend_arguments(parser)
