"""Would a TFLite export label faster? The default base's forward pass (InceptionV3 at 96 px +
a 2-class head, random weights: speed does not depend on them) through TensorFlow (one
`tf.function`, as `earmark label` calls its model) against the same Keras model converted to
TFLite (XNNPACK, float32) and to TFLite with dynamic-range INT8 weights, side by side in one
run: windows per second at batches of `--batch` on `--threads` threads, in alternating rounds
(median of `--rounds`), the largest score difference to TensorFlow's, and the file size.

    .venv/bin/python benchmarks/tflite_forward.py [--batch 128] [--rounds 5] [--seconds 3]

The log-mel frontend is left out (0.12 ms of the ~3-6 ms per window, README): it is the
base that costs.
"""
import argparse
import time

import numpy as np


def build_model(input_px: int, classes: int = 2):
    import keras
    inputs = keras.Input((input_px, input_px, 3))
    base = keras.applications.InceptionV3(include_top=False, weights=None, input_tensor=inputs,
                                          pooling="avg")
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(base.output))


def tflite_runner(model, batch: np.ndarray, threads: int, int8: bool):
    """(run() → scores, size in bytes) of `model` converted to TFLite."""
    import tensorflow as tf
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]   # dynamic-range INT8 weights
    blob = converter.convert()
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--input-px", type=int, default=96)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=float, default=3.0, help="per runner per round")
    args = p.parse_args(argv)
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
