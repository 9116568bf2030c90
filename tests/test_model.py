"""Model builders and pretrained backbone loading."""

import h5py
import numpy as np
import pytest
from conftest import PRETRAINED

from squeezedet.config import ModelConfig
from squeezedet.errors import ModelFileError
from squeezedet.model import build_model, count_params
from squeezedet.model.pretrained import load_pretrained_backbone


def test_squeezedet_parameter_count_matches_paper():
    m = build_model(ModelConfig(input_width=64, input_height=32))
    assert abs(count_params(m) - 2.08e6) / 2.08e6 < 0.01
    assert count_params(m) == 2_082_120


def test_squeezedet_plus_parameter_count():
    m = build_model(ModelConfig(architecture="squeezedet_plus", input_width=64, input_height=32))
    assert abs(count_params(m) - 7.0e6) / 7.0e6 < 0.01


def test_output_grid_follows_input_size_and_takes_uint8():
    cfg = ModelConfig(input_width=96, input_height=48, classes=["a", "b"], anchor_shapes=[(8, 8), (16, 8)])
    m = build_model(cfg)
    assert m.input.dtype == "uint8"
    out = m(np.zeros((1, 48, 96, 3), np.uint8))
    assert tuple(out.shape) == (1, 3, 6, 2 * (2 + 5))


def test_pretrained_backbone_reproduces_every_weight_exactly():
    m = build_model(ModelConfig(input_width=64, input_height=32))
    assigned = load_pretrained_backbone(m, PRETRAINED)
    assert len(assigned) == 1 + 8 * 3  # conv1 + fire2..fire9 x (squeeze, expand1x1, expand3x3)
    # read the file independently of the loader: dataset paths like fire2/squeeze1x1/.../kernel:0
    expected = {}
    with h5py.File(PRETRAINED) as fh:
        def visit(path, obj):
            if isinstance(obj, h5py.Dataset):
                parts = path.split("/")
                layer = parts[0] if parts[0] == "conv1" else f"{parts[0]}_{parts[1]}"
                expected[(layer, parts[-1].split(":")[0])] = obj[()]
        fh.visititems(visit)
    assert len(expected) == 2 * len(assigned)
    for (layer, kind), array in expected.items():
        np.testing.assert_array_equal(getattr(m.get_layer(layer), kind).numpy(), array)
    assert sum(a.size for a in expected.values()) == 722_496


def test_pretrained_input_convention_bgr_minus_means():
    from squeezedet.model.layers import ImageNormalization

    x = np.array([[[[10, 20, 30]]]], np.uint8)  # RGB
    y = ImageNormalization()(x).numpy()
    np.testing.assert_allclose(y[0, 0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-5)


def test_missing_or_bad_pretrained_file_is_a_clear_error(tmp_path):
    m = build_model(ModelConfig(input_width=64, input_height=32))
    with pytest.raises(ModelFileError, match="not found"):
        load_pretrained_backbone(m, tmp_path / "nope.h5")
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(ModelFileError, match="not a readable HDF5"):
        load_pretrained_backbone(m, bad)
    plus = build_model(ModelConfig(architecture="squeezedet_plus", input_width=64, input_height=32))
    with pytest.raises(ModelFileError, match="shape"):
        load_pretrained_backbone(plus, PRETRAINED)


def test_geometry_of_the_original_release_valid_padding_and_1x1_convdet():
    cfg = ModelConfig(input_width=1242, input_height=375, padding="valid", convdet_kernel=1)
    m = build_model(cfg, training_dropout=False)
    assert m.output.shape == (None, 22, 76, 72)
    assert cfg.grid_size == (76, 22) and len(cfg.anchors()) == 76 * 22 * 9
    assert m.get_layer("convdet").kernel.shape == (1, 1, 768, 72)
    assert m.get_layer("conv1").padding == "valid" and m.get_layer("pool3").padding == "valid"
