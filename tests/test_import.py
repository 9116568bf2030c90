"""`squeezedet import` on sources built here in the original TF1 naming (so it runs on a fresh clone):
a frozen float GraphDef with the original's anchor and clipping constants, a TF1 checkpoint, a raw float32
folder; the import must reproduce each exactly, and refuse what is not SqueezeDet with one line."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import SAMPLE_ROOT, one_line_error

from squeezedet.cli import main
from squeezedet.core.anchors import anchor_grid, grid_size
from squeezedet.importers.layout import ORIGINAL_LAYERS, keras_name

W, H = 96, 64  # VALID: 96 -> 47 -> 23 -> 11 -> 5, 64 -> 31 -> 15 -> 7 -> 3
ANCHORS = [(20.0, 12.0), (8.0, 16.0)]
CLASSES = 3
FIRE = {2: (16, 64), 3: (16, 64), 4: (32, 128), 5: (32, 128), 6: (48, 192), 7: (48, 192), 8: (64, 256),
        9: (64, 256), 10: (96, 384), 11: (96, 384)}
CHECK_IMAGES = SAMPLE_ROOT / "training" / "image_2"


def original_params(seed=0, convdet_kernel=3) -> dict:
    """Random weights with the original layer names and HWIO shapes (scaled to keep activations sane)."""
    rng = np.random.default_rng(seed)
    params, cin = {}, 3

    def add(name, k, cin, cout):
        params[name] = (rng.normal(0, (2.0 / (k * k * cin)) ** 0.5, (k, k, cin, cout)).astype(np.float32),
                        rng.normal(0, 0.05, cout).astype(np.float32))

    add("conv1", 3, 3, 64)
    cin = 64
    for i, (s, e) in FIRE.items():
        add(f"fire{i}/squeeze1x1", 1, cin, s)
        add(f"fire{i}/expand1x1", 1, s, e)
        add(f"fire{i}/expand3x3", 3, s, e)
        cin = 2 * e
    add("conv12", convdet_kernel, cin, len(ANCHORS) * (CLASSES + 5))
    return params


def build_tf1_graph(params, padding="VALID"):
    """The original src/nets/squeezeDet.py forward pass as a TF1 graph with variables; returns (graph, output)."""
    import tensorflow as tf

    v1 = tf.compat.v1
    graph = tf.Graph()
    with graph.as_default():
        x = v1.placeholder(tf.float32, [None, H, W, 3], name="image_input")

        def conv(inp, name, stride=1, pad="SAME", relu=True):
            k, b = params[name]
            with v1.variable_scope(name):
                kernel = v1.get_variable("kernels", initializer=k)
                bias = v1.get_variable("biases", initializer=b)
                out = tf.nn.bias_add(tf.nn.conv2d(inp, kernel, [1, stride, stride, 1], pad), bias, name="bias_add")
                return tf.nn.relu(out, "relu") if relu else out

        net = conv(x, "conv1", 2, padding)
        pools = {2: "pool1", 4: "pool3", 6: "pool5"}
        for i in range(2, 12):
            if i in pools:
                net = tf.nn.max_pool2d(net, 3, 2, padding, name=pools[i])
            s = conv(net, f"fire{i}/squeeze1x1")
            net = tf.concat([conv(s, f"fire{i}/expand1x1"), conv(s, f"fire{i}/expand3x3")], 3, name=f"fire{i}/concat")
        out = conv(net, "conv12", relu=False)
    return graph, out


def interpretation_consts(anchors: np.ndarray):
    """The constants the original _add_interpretation_graph bakes in: anchor cx/cy/w/h, clip to W-1/H-1."""
    import tensorflow as tf

    graph = tf.Graph()
    with graph.as_default():
        for scope, value in (("bbox/stretching/add/", anchors[:, 0]), ("bbox/stretching/add_1/", anchors[:, 1])):
            with tf.compat.v1.name_scope(scope):
                tf.constant(value, name="x")
        for scope, value in (("bbox/stretching/mul/", anchors[:, 2]), ("bbox/stretching/mul_1/", anchors[:, 3]),
                             ("bbox/trimming/bbox_xmin/", np.float32(W - 1)),
                             ("bbox/trimming/bbox_ymin/", np.float32(H - 1))):
            with tf.compat.v1.name_scope(scope):
                tf.constant(value, name="y")
    return graph.as_graph_def().node


@pytest.fixture(scope="module")
def tf1_sources(tmp_path_factory):
    """A frozen float graph and a checkpoint of the same random weights, and the graph's own outputs."""
    import tensorflow as tf

    from squeezedet.core.preprocess import read_image_rgb, resize_for_model
    from squeezedet.importers.convert import to_bgr

    root = tmp_path_factory.mktemp("tf1")
    params = original_params()
    graph, out = build_tf1_graph(params)
    images = sorted(CHECK_IMAGES.iterdir())[:2]
    bgr = to_bgr(np.stack([resize_for_model(read_image_rgb(p), (W, H)) for p in images]))
    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        expected = sess.run(out, {"image_input:0": bgr})
        ckpt = tf.compat.v1.train.Saver().save(sess, str(root / "ckpt" / "model.ckpt"), global_step=1000)
        frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["conv12/bias_add"])
    gw, gh = grid_size(W, H, "valid")
    frozen.node.extend(interpretation_consts(anchor_grid(W, H, ANCHORS, (gw, gh))))
    pb = root / "squeezedet.pb"
    pb.write_bytes(frozen.SerializeToString())
    return {"params": params, "pb": pb, "ckpt": ckpt, "expected": expected, "images": images}


def _weights(out_dir):
    from squeezedet.config import load_config
    from squeezedet.inference import load_weights
    from squeezedet.model import build_model

    cfg = load_config(out_dir / "config.yaml")
    model = build_model(cfg.model, training_dropout=False)
    load_weights(model, out_dir / "model.weights.h5")
    return cfg, model


def _keras_raw(model, images, size):
    from squeezedet.core.preprocess import read_image_rgb, resize_for_model

    batch = np.stack([resize_for_model(read_image_rgb(p), size) for p in images])
    return np.asarray(model(batch, training=False))


def test_frozen_float_graph_is_imported_exactly_with_its_geometry(tf1_sources, tmp_path, capsys):
    out = tmp_path / "imported"
    assert main(["import", str(tf1_sources["pb"]), "--output", str(out), "--check-images", str(CHECK_IMAGES)]) == 0
    assert "96x64 valid padding, grid 5x3x2, 3x3 ConvDet" in capsys.readouterr().out
    cfg, model = _weights(out)
    m = cfg.model
    # geometry read from the graph: clip constants (size), conv1/pool1 ops (padding), anchor constants
    assert (m.input_width, m.input_height, m.padding, m.convdet_kernel) == (W, H, "valid", 3)
    assert [tuple(a) for a in m.anchor_shapes] == ANCHORS and m.classes == ["car", "pedestrian", "cyclist"]
    for name in ORIGINAL_LAYERS:  # every tensor lands in its layer unchanged
        k, b = tf1_sources["params"][name]
        got_k, got_b = model.get_layer(keras_name(name)).get_weights()
        np.testing.assert_array_equal(got_k, k)
        np.testing.assert_array_equal(got_b, b)
    ours = _keras_raw(model, tf1_sources["images"], (W, H))
    assert ours.shape == (2, 3, 5, 16)
    assert np.max(np.abs(ours - tf1_sources["expected"])) < 1e-3  # the TF1 graph's own outputs
    report = yaml.safe_load((out / "import_report.json").read_text())
    assert report["max_abs_dev_source"] < 1e-3 and report["format"] == "tf1-graph"
    assert report["quantized_weights"] is False


def test_tf1_checkpoint_in_original_naming_is_imported_exactly(tf1_sources, tmp_path):
    out = tmp_path / "ckpt_import"
    # a checkpoint stores no geometry: anchors from a config, input size and padding as flags
    config = tmp_path / "base.yaml"
    config.write_text(yaml.safe_dump({"model": {"anchor_shapes": [list(a) for a in ANCHORS]}}))
    assert main(["import", tf1_sources["ckpt"], "--output", str(out), "--config", str(config),
                 "--input-size", f"{W}x{H}", "--padding", "valid", "--check-images", str(CHECK_IMAGES)]) == 0
    cfg, model = _weights(out)
    assert cfg.model.grid_size == (5, 3)
    assert np.max(np.abs(_keras_raw(model, tf1_sources["images"], (W, H)) - tf1_sources["expected"])) < 1e-3


def test_raw_float32_folder_is_read_output_channel_first(tmp_path):
    from squeezedet.importers.raw_float32 import read_raw_float32

    params = original_params(seed=3, convdet_kernel=1)
    for name, (k, b) in params.items():
        stem = tmp_path / name.replace("/", "_")
        k.transpose(3, 0, 1, 2).astype("<f4").tofile(f"{stem}_W.bin")  # HWIO -> OHWI, as the Metal demo stores it
        b.astype("<f4").tofile(f"{stem}_b.bin")
    source = read_raw_float32(tmp_path)
    for name, (k, b) in params.items():
        np.testing.assert_array_equal(source.params[name][0], k)
        np.testing.assert_array_equal(source.params[name][1], b)
    assert source.geometry == {"convdet_kernel": 1}


def test_not_squeezedet_sources_fail_with_one_line_and_write_nothing(tf1_sources, tmp_path, capsys):
    import tensorflow as tf

    other = tf.Graph()
    with other.as_default():
        tf.constant(1.0, name="conv1/kernels")
    pb = tmp_path / "other.pb"
    pb.write_bytes(other.as_graph_def().SerializeToString())
    junk = tmp_path / "junk.pb"
    junk.write_bytes(b"\x00\xff not a protobuf \xff" * 10)
    out = tmp_path / "out"
    cases = [
        (pb, [], "not a SqueezeDet graph: no constant conv1/biases"),
        (junk, [], "not a TensorFlow GraphDef"),
        (tmp_path / "missing.pb", [], "missing.pb: not found"),
        (tmp_path, ["--format", "tf1-graph"], "a TF1 graph is one .pb file, this is not a file"),
        (tmp_path, [], "holds neither <layer>_W.bin files nor a TF checkpoint"),
        (tf1_sources["pb"], ["--output", str(pb)], "--output must be a folder, this is a file"),
    ]
    for path, extra, message in cases:
        err = one_line_error(capsys, "import", str(path), "--output", str(out), "--check-images", str(CHECK_IMAGES),
                             *extra)
        assert message in err, err
    # a real graph with the wrong class count: conv12 has 2 x (3 + 5) outputs
    assert main(["import", str(tf1_sources["pb"]), "--output", str(out), "--classes", "car", "person",
                 "--check-images", str(CHECK_IMAGES)]) == 2
    err = capsys.readouterr().err
    assert "conv12 has 16 outputs, 2 anchors x (2 classes + 5) = 14 expected (the source has 3 classes)" in err
    assert not out.exists()
