"""Would a TFLite export label faster? The default base's forward pass (InceptionV3 at 96 px +
a 2-class head, random weights: speed does not depend on them; the product pools three depths
of the same network, the same convolutions) through TensorFlow (one
`tf.function`, as `earmark label` calls its model) against the same Keras model converted to
TFLite (XNNPACK, float32) and to TFLite with dynamic-range INT8 weights, side by side in one
run: windows per second at batches of `--batch` on `--threads` threads, in alternating rounds
(median of `--rounds`), the largest score difference to TensorFlow's, and the file size.

    .venv/bin/python benchmarks/tflite_forward.py [--batch 128] [--rounds 5] [--seconds 3]
    .venv/bin/python benchmarks/tflite_forward.py --nights DIR [--model MODEL_DIR]

The log-mel frontend is left out (0.12 ms of the ~3-6 ms per window, README): it is the
base that costs.

`--nights DIR` (a `--workdir` of night_heads.py: nights/NAME.wav, NAME.truth.csv) measures
a trained model instead (default DIR/model_dropout): `--precision int8` as `earmark label`
loads it (`model.int8`: its embedder + head with INT8 weights in TFLite, the log-mel
frontend left in TensorFlow; converted here when the model was trained with `--no-int8`)
against float32 in TensorFlow, on every window of every night at the model's hop: the
largest score difference, event F1 per night at the model's calibrated
post-processing, and the time of each.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_model(input_px: int, classes: int = 2):
    import keras
    inputs = keras.Input((input_px, input_px, 3))
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_tensor=inputs,
                                          pooling="avg")
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(base.output))


def tflite_runner(model, batch: np.ndarray, threads: int, int8: bool):
    """(run() → scores, size in bytes) of `model` converted to TFLite as `train`
    converts (`model.int8.convert`), with INT8 or float32 weights."""
    import tensorflow as tf
    from earmark.model.int8 import convert
    blob = convert(model, weights_8bit=int8)
    interpreter = tf.lite.Interpreter(model_content=blob, num_threads=threads)
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    interpreter.resize_tensor_input(inp, list(batch.shape))
    interpreter.allocate_tensors()

    def run():
        interpreter.set_tensor(inp, batch)
        interpreter.invoke()
        return interpreter.get_tensor(out)
    return run, len(blob)


def night_parity(nights_dir: str, model_dir, batch: int) -> None:
    from earmark.model import calibrate, data, event_metrics, export, serving
    from earmark.model.int8 import Int8Model, convert
    from earmark.model.segments import PostProcessing, WindowGrid, to_segments, written_labels
    from earmark.model.windowing import frame_windows
    import night_heads   # its --workdir layout
    model_dir = model_dir or night_heads.model_dir(nights_dir)
    predictor = serving.predictor(model_dir, "float32")
    meta = predictor.meta
    if meta.get("int8"):        # shipped by train: what `label --precision int8` loads
        int8 = serving.predictor(model_dir, "int8")
    else:                       # converted here as `train` would have
        t0 = time.perf_counter()
        int8 = Int8Model(export.feature_config(meta),
                         convert(export.log_mel_model(predictor.model)))
        print(f"converted to 8-bit weights in {time.perf_counter() - t0:.1f} s")
    rate, window = predictor.sample_rate_hz, predictor.window_samples
    quality = export.feature_config(meta).resample_quality   # as `earmark label` reads
    hop = int(round(predictor.default_hop_seconds * rate))
    labels = meta["labels"]
    written = written_labels(meta)   # as `earmark label` writes by default
    pps = [PostProcessing.from_dict(meta["post_processing"][l]) if l in written else None
           for l in labels]
    grid = WindowGrid(hop / rate, window / rate)
    runners = {"TensorFlow float32": predictor.predict, "TFLite INT8 embedder": int8.predict}
    f1, seconds, worst = {k: [] for k in runners}, dict.fromkeys(runners, 0.0), 0.0
    for wav, truth in night_heads.workdir_nights(nights_dir).items():
        waveform = calibrate.read_audio(wav, rate, quality, data.read_source_bytes)
        windows = frame_windows(waveform, window, hop)
        scores = {}
        for name, run in runners.items():
            t0 = time.perf_counter()
            scores[name] = np.concatenate([run(windows[i:i + batch])
                                           for i in range(0, len(windows), batch)])
            seconds[name] += time.perf_counter() - t0
            found = to_segments(scores[name], labels, pps, grid, len(waveform) / rate)
            f1[name].append(event_metrics.f1(*event_metrics.event_f1(truth, found))[2])
        worst = max(worst, float(np.abs(scores["TFLite INT8 embedder"]
                                        - scores["TensorFlow float32"]).max()))
    print(f"{model_dir} on {len(f1['TensorFlow float32'])} nights: max |score diff| {worst:.4f}")
    for name in runners:
        print(f"{name:<22} event F1 {' / '.join(f'{x:.3f}' for x in f1[name])}, mean "
              f"{np.mean(f1[name]):.3f}; {seconds[name]:.1f} s "
              f"({seconds['TensorFlow float32'] / seconds[name]:.2f}x)")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--input-px", type=int, default=96)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="per runner per round")
    p.add_argument("--nights", help="a night_heads.py --workdir: measure a trained model there")
    p.add_argument("--model", help="default: NIGHTS/model_dropout")
    args = p.parse_args(argv)
    if args.nights:
        return night_parity(args.nights, args.model, args.batch)   # model: None → DIR's
    import tensorflow as tf
    model = build_model(args.input_px)
    batch = np.random.default_rng(0).normal(
        size=(args.batch, args.input_px, args.input_px, 3)).astype(np.float32)
    serve = tf.function(lambda x: model(x, training=False),
                        input_signature=[tf.TensorSpec([None, args.input_px, args.input_px, 3])])
    reference = serve(batch).numpy()
    runners = {"TensorFlow float32": (lambda: serve(batch).numpy(), None)}
    for name, int8 in (("TFLite float32", False), ("TFLite INT8 weights", True)):
        runners[name] = tflite_runner(model, batch, args.threads, int8)
    rates = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, (run, _) in runners.items():
            t0, n = time.perf_counter(), 0
            while time.perf_counter() - t0 < args.seconds:
                run()
                n += args.batch
            rates[name].append(n / (time.perf_counter() - t0))
    tf_rate = float(np.median(rates["TensorFlow float32"]))
    print(f"{'runner':<22}{'windows/s':>10}{'vs TF':>8}{'max |score diff|':>18}{'MB':>7}  rounds")
    for name, (run, size) in runners.items():
        rate = float(np.median(rates[name]))
        diff = float(np.abs(run() - reference).max())
        mb = f"{size / 1e6:.1f}" if size else "-"
        print(f"{name:<22}{rate:>10.0f}{rate / tf_rate:>7.2f}x{diff:>18.1e}{mb:>7}  "
              f"{[round(r) for r in rates[name]]}")


if __name__ == "__main__":
    main()
