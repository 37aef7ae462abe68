"""The steps of `earmark label`, each a composite PTransform (every transform in it labelled):

    ReadWindows   recordings → (file, window index) → waveform window: Reshuffle, PlanChunks
                  (header only), Reshuffle, DecodeChunks (one chunk's windows, framed by
                  `model.windowing`'s one rule)
    Score         windows → (file, (window index, scores)): RunInference on fixed-size
                  batches of the exported model (`model.scoring.score_windows`); with
                  `embeddings`, each window's embedding too (`model.embedding`), as rows
                  (file, window index, embedding, scores) for `earmark embed` and
                  `earmark label --formats embeddings`
    MakeSegments  one recording's windows' scores, put back together
                  (`model.scoring.assemble_scores`), → thresholds, smoothing, merging

A file that fails anywhere leaves a dead-letter record (tag `DEAD_LETTER`), never a crash.
`pipelines/label.py` wires them, with its writers (`WriteSegments`), into the pipeline.
"""
import json
import os
import uuid

import apache_beam as beam
import numpy as np
from apache_beam.ml.inference.base import KeyedModelHandler, ModelHandler, PredictionResult, RunInference

from earmark.model import precision, progress, scoring
from earmark.model.features import FeatureConfig
from earmark.model.segments import WindowGrid, to_segments
from earmark.pipelines import corpus, fs
from earmark.pipelines.chunks import FileInfo, file_info, plan_chunks, read_chunk_windows
from earmark.pipelines.model_cache import local_model_dir

DEAD_LETTER = "dead_letter"  # the pipeline's tag of failed files


def _dead(path, key, stage, reason, detail=""):
    beam.metrics.Metrics.counter("label", f"failed_{reason}").inc()
    return beam.pvalue.TaggedOutput(DEAD_LETTER, {"path": path, "file": key, "stage": stage,
                                                  "reason": reason, "detail": detail})


class WaveformModelHandler(ModelHandler):
    """Runs an exported earmark model (`model.serving.Predictor`: image CNN, musicnn or
    BirdNET alike) on batches of waveform windows; one model per process."""

    def __init__(self, model_dir: str, batch_size: int, run_id: str = "",
                 precision_name: str = precision.DEFAULT_PRECISION, embedder_batch_size: int = None):
        self._model_dir = model_dir
        self._batch_size, self._embedder_batch_size = batch_size, embedder_batch_size
        self._run_id = run_id or uuid.uuid4().hex
        self._precision = precision_name   # resolved where the model runs: a worker's hardware

    def load_model(self):
        from earmark.model import serving
        predictor = serving.predictor(local_model_dir(self._model_dir), self._precision,
                                      self._embedder_batch_size)
        ran = precision.effective(self._precision, predictor.meta)
        beam.metrics.Metrics.counter("label", f"models_in_{ran}").inc()
        return predictor

    def run_inference(self, batch, model, inference_args=None):
        scores = scoring.score_windows(model.predict, np.stack(batch))
        progress.tracker(self._run_id, "label", "windows").update(len(batch))
        return [PredictionResult(None, s) for s in np.asarray(scores)]

    def batch_elements_kwargs(self):
        # fixed-size batches: the model's cost per window falls steeply with batch size
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}

    def share_model_across_processes(self):
        return False


class EmbeddingModelHandler(ModelHandler):
    """Runs `model.embedding`'s embedder on batches of waveform windows → (embedding,
    scores or None) per window: a trained model's (`source` {"model": dir}) or an
    embedding base's alone ({"base": name}); one per process. Every call is padded to
    `batch_size` windows, so a window's vector never depends on the batch it came in
    (the shards are the same bytes whatever the worker count)."""

    def __init__(self, source: dict, batch_size: int, run_id: str = "",
                 precision_name: str = precision.DEFAULT_PRECISION, embedder_batch_size: int = None,
                 prog: str = "label"):
        self._source = dict(source)
        self._batch_size, self._embedder_batch_size = batch_size, embedder_batch_size
        self._run_id, self._precision, self._prog = run_id or uuid.uuid4().hex, precision_name, prog

    def load_model(self):
        from earmark.model import embedding
        if "model" in self._source:
            embedder = embedding.for_model(local_model_dir(self._source["model"]), self._precision,
                                           self._embedder_batch_size)
            ran = precision.effective(self._precision, embedder.meta, scores_only=False)
            beam.metrics.Metrics.counter(self._prog, f"models_in_{ran}").inc()
            return embedder
        return embedding.for_base(self._source["base"], self._embedder_batch_size)

    def run_inference(self, batch, model, inference_args=None):
        windows, out = np.stack(batch), []
        for i in range(0, len(windows), self._batch_size):
            emb, scores = model.run(windows[i:i + self._batch_size], pad_to=self._batch_size)
            out += [PredictionResult(None, (e, None if scores is None else scores[k]))
                    for k, e in enumerate(emb)]
        progress.tracker(self._run_id, self._prog, "windows").update(len(batch))
        return out

    def batch_elements_kwargs(self):
        return {"min_batch_size": self._batch_size, "max_batch_size": self._batch_size}

    def share_model_across_processes(self):
        return False


class PlanChunks(beam.DoFn):
    """Recording → its chunks (from the header alone) and its FileInfo."""

    def __init__(self, config_json: str, windows_per_chunk: int, run_id: str = "",
                 count_total: bool = False, prog: str = "label"):
        self._config_json, self._windows_per_chunk = config_json, windows_per_chunk
        # the progress total (for an ETA) only where planning and inference share a process
        self._run_id, self._count_total, self._prog = run_id, count_total, prog

    def setup(self):
        self._config = FeatureConfig.from_dict(json.loads(self._config_json))

    def process(self, rec: corpus.Recording):
        from earmark.model.audio import AudioError
        c = self._config
        ext = os.path.splitext(rec.path)[1].lower()
        if ext not in corpus.AUDIO_EXTENSIONS:
            yield _dead(rec.path, rec.key, "read", "unsupported_extension", ext or "no extension")
            return
        entry = fs.stat_entry(rec.path) if not fs.is_gcs(rec.path) else None
        if entry is not None and entry.problem:  # a FIFO or a device is never opened
            yield _dead(rec.path, rec.key, "read", entry.problem, entry.detail)
            return
        try:
            with fs.open_seekable(rec.path) as f:
                if f.read(1) == b"":
                    raise AudioError("empty_file", "0 bytes")
                f.seek(0)
                info = file_info(f, rec.path, c.sample_rate_hz, c.patch_samples, c.patch_hop_samples)
        except AudioError as e:
            yield _dead(rec.path, rec.key, "decode", e.reason, e.detail)
            return
        except Exception as e:
            yield _dead(rec.path, rec.key, "read", "read_error", f"{type(e).__name__}: {e}"[:300])
            return
        yield beam.pvalue.TaggedOutput("info", (rec.key, info))
        if self._count_total:
            progress.tracker(self._run_id, self._prog, "windows").add_total(info.num_windows)
        for chunk in plan_chunks(info, self._windows_per_chunk):
            yield rec.key, chunk, info


class DecodeChunk(beam.DoFn):
    """(key, chunk, info) → ((key, window index), waveform window) for each window."""

    def __init__(self, config_json: str):
        self._config_json = config_json

    def setup(self):
        self._config = FeatureConfig.from_dict(json.loads(self._config_json))

    def process(self, element):
        key, chunk, info = element
        c = self._config
        try:
            with fs.open_seekable(chunk.path) as f:
                windows = read_chunk_windows(f, info, chunk, c.sample_rate_hz, c.patch_samples,
                                             c.patch_hop_samples, c.resample_quality)
        except Exception as e:
            reason = getattr(e, "reason", "decode_error")
            yield beam.pvalue.TaggedOutput("chunk_failed", (key, f"{reason}: {e}"[:300]))
            return
        beam.metrics.Metrics.counter("label", "windows").inc(len(windows))
        for i, window in enumerate(windows):
            yield (key, chunk.first_window + i), window


class SegmentRecording(beam.DoFn):
    """Everything known about one recording → its segments, or a dead-letter record."""

    def __init__(self, labels, post: list, grid: WindowGrid, keep_scores: bool):
        self._labels, self._post = list(labels), list(post)
        self._grid, self._keep_scores = grid, keep_scores

    def process(self, element):
        key, grouped = element
        infos, scored, failures = grouped["info"], grouped["scores"], grouped["failed"]
        info: FileInfo = infos[0]
        if failures:
            yield _dead(info.path, key, "inference" if "inference" in failures[0] else "decode",
                        failures[0].split(":")[0], "; ".join(sorted(set(failures)))[:300])
            return
        scores = scoring.assemble_scores(scored, info.num_windows, len(self._labels))
        if scores is None:
            yield _dead(info.path, key, "inference", "missing_windows",
                        f"{len(scored)} of {info.num_windows} windows scored")
            return
        segments = to_segments(scores, self._labels, self._post, self._grid, info.duration_s)
        beam.metrics.Metrics.counter("label", "files_labeled").inc()
        yield {"file": key, "path": info.path, "duration_s": info.duration_s,
               "windows": int(info.num_windows), "segments": segments,
               "scores": scores if self._keep_scores else None}


class ReadWindows(beam.PTransform):
    """Recordings → {"windows": ((key, window index), window), "info": (key, FileInfo),
    "chunk_failed": (key, reason), DEAD_LETTER: records of files that cannot be read}.
    Reshuffles spread files before their headers are read and chunks before decoding."""

    def __init__(self, config: FeatureConfig, chunk_seconds: float, run_id: str,
                 count_total: bool, prog: str = "label"):
        super().__init__()
        self._config, self._run_id, self._count_total = config, run_id, count_total
        self._prog = prog
        self._windows_per_chunk = max(1, int(round(chunk_seconds / config.patch_hop_seconds)))

    def expand(self, recordings):
        planned = (recordings
                   | "ReshuffleFiles" >> beam.Reshuffle()
                   | "PlanChunks" >> beam.ParDo(PlanChunks(self._config.to_json(), self._windows_per_chunk,
                                                          self._run_id, self._count_total,
                                                          self._prog))
                   .with_outputs("info", DEAD_LETTER, main="chunks"))
        read = (planned.chunks
                | "ReshuffleChunks" >> beam.Reshuffle()
                | "DecodeChunks" >> beam.ParDo(DecodeChunk(self._config.to_json()))
                .with_outputs("chunk_failed", main="windows"))
        return {"windows": read.windows, "info": planned.info, "chunk_failed": read.chunk_failed,
                DEAD_LETTER: planned[DEAD_LETTER]}


class Score(beam.PTransform):
    """((key, window index), window) → {"scores": (key, (window index, scores)), "failed":
    (key, reason) of the files whose windows the model could not score}. With `embeddings`
    (the source of `EmbeddingModelHandler`: {"model": dir} or {"base": name}) also "rows":
    (key, window index, embedding, scores or None); a base alone has no "scores"."""

    def __init__(self, model_dir: str, batch_size: int, run_id: str,
                 precision_name: str = precision.DEFAULT_PRECISION, embedder_batch_size: int = None,
                 embeddings: dict = None, prog: str = "label"):
        super().__init__()
        self._embeddings = embeddings
        handler = (EmbeddingModelHandler(embeddings, batch_size, run_id, precision_name,
                                         embedder_batch_size, prog) if embeddings else
                   WaveformModelHandler(model_dir, batch_size, run_id, precision_name,
                                        embedder_batch_size))
        self._handler = KeyedModelHandler(handler)

    def expand(self, windows):
        inferred, other = (windows | "RunInference" >> RunInference(self._handler)
                           .with_exception_handling())
        out = {}
        if self._embeddings:
            rows = inferred | "Rows" >> beam.MapTuple(
                lambda key, result: (key[0], key[1], result.inference[0], result.inference[1]))
            out["rows"] = rows
            if "model" in self._embeddings:
                out["scores"] = rows | "FileKey" >> beam.Map(lambda r: (r[0], (r[1], r[3])))
        else:
            out["scores"] = inferred | "FileKey" >> beam.MapTuple(
                lambda key, result: (key[0], (key[1], np.asarray(result.inference, np.float32))))
        out["failed"] = other.failed_inferences | "FailedBatchFiles" >> beam.FlatMap(
            lambda failed: {(k[0], f"inference_error: {type(failed[1]).__name__}: {failed[1]}"[:300])
                            for k, _ in failed[0]})
        return out


class MakeSegments(beam.PTransform):
    """{"info", "scores", "chunk_failed", "inference_failed" (each keyed by file)} →
    {"results": one dict per labeled recording (file, path, duration_s, segments, scores),
    DEAD_LETTER: one record per failed file}."""

    def __init__(self, labels, post: list, grid: WindowGrid, keep_scores: bool):
        super().__init__()
        self._segment = SegmentRecording(labels, post, grid, keep_scores)

    def expand(self, keyed):
        failed = ((keyed["chunk_failed"], keyed["inference_failed"]) | "Failures" >> beam.Flatten())
        results = ({"info": keyed["info"], "scores": keyed["scores"], "failed": failed}
                   | "GroupPerRecording" >> beam.CoGroupByKey()
                   | "SegmentRecording" >> beam.ParDo(self._segment)
                   .with_outputs(DEAD_LETTER, main="results"))
        return {"results": results.results, DEAD_LETTER: results[DEAD_LETTER]}
