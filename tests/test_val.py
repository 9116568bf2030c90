"""`squeezedet val`: Keras weights and a .tflite through the same split give official metrics."""

import json

import pytest

from squeezedet.cli import main


@pytest.mark.slow
def test_val_keras_and_tflite_on_the_overfit_images(tiny_trained, tmp_path):
    from squeezedet.export.exporter import export_tflite

    out_k = tmp_path / "keras"
    assert main(["val", "--weights", str(tiny_trained.weights_path), "--data", str(tiny_trained.data_root),
                 "--split", "train", "--output", str(out_k)]) == 0
    metrics = json.loads((out_k / "metrics.json").read_text())
    car = metrics["classes"]["Car"]
    # 4 images the model has memorised: every valid car found -> with n <= 40 GT the devkit's AP_R40 is
    # (n - 1) / 40 for perfect output (see docs/evaluation.md), so require at least 80 % of that.
    n = car["moderate"]["num_gt"]
    assert n >= 10
    assert car["moderate"]["AP_R40"] >= 0.8 * (n - 1) / 40 * 100
    assert sorted(p.name for p in (out_k / "results").iterdir()) == ["000003.txt", "000008.txt", "000010.txt",
                                                                     "000015.txt"]
    assert (out_k / "pr_curves.png").stat().st_size > 1000

    model = export_tflite(tiny_trained.config, tiny_trained.weights_path, tmp_path / "m.tflite", quantize="fp32",
                          check_images=0)
    out_t = tmp_path / "tflite"
    assert main(["val", "--model", str(model), "--data", str(tiny_trained.data_root), "--split", "train",
                 "--output", str(out_t)]) == 0
    tfl = json.loads((out_t / "metrics.json").read_text())["classes"]["Car"]["moderate"]["AP_R40"]
    assert tfl == pytest.approx(car["moderate"]["AP_R40"], abs=1.0)


def test_val_needs_exactly_one_model(capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["val", "--data", str(tmp_path)])
    assert "one of the arguments --weights --model is required" in capsys.readouterr().err
