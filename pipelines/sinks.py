"""Beam's text and TFRecord sinks, with every file they write known by name before it is
written, so that `--overwrite` after a killed run removes exactly earmark's files.

Beam's own sinks write into a temporary folder `beam-temp-<prefix>-<random uuid>` and, at
the end, rename the shards into place under names only known then. Here the temporary
folder is `beam-temp-<prefix>-<run id>` (`temp_folder`: the launcher lists it in the output
manifest before the run starts), and the final shard names are written to the run's journal
(`outputs.journal_entry`) before the first rename. Beam's step that deletes older files
matching the shards' glob is skipped: the output was claimed (empty, or cleared of earmark's
listed files) before the run, and a file earmark did not write is never deleted.

Relies on `FileBasedSink._create_temp_dir` and `pre_finalize` (apache-beam 2.72, pinned);
tests/test_outputs.py checks both.
"""
import apache_beam as beam
from apache_beam.io import textio, tfrecordio
from apache_beam.io.filesystems import FileSystems

from earmark.pipelines import fs


def temp_folder(prefix_name: str, run_id: str) -> str:
    """The temporary folder (beside the shards) of the sink writing `<prefix_name>-*`."""
    return f"beam-temp-{prefix_name}-{run_id}"


class _Named:
    """Mixed into a FileBasedSink: a temporary folder named by the run, shard names
    journaled before they are renamed into place."""
    _output: str
    _run_id: str

    def _create_temp_dir(self, file_path_prefix):
        base, last = FileSystems.split(file_path_prefix)
        return FileSystems.join(base, temp_folder(last, self._run_id))

    def pre_finalize(self, init_result, writer_results):
        from earmark.pipelines import outputs
        count = len(list(writer_results))
        names = [outputs.relative(self._output, self._get_final_name(i, count))
                 for i in range(count)]
        _, last = FileSystems.split(self.file_path_prefix.get())
        outputs.journal(self._output, self._run_id, f"sink-{last}", names)


class _NamedTextSink(_Named, textio._TextSink):
    pass


class _NamedTFRecordSink(_Named, tfrecordio._TFRecordSink):
    pass


def _named(write: beam.PTransform, sink_class, output: str, run_id: str) -> beam.PTransform:
    write._sink.__class__ = sink_class   # the same sink, with the two methods above
    write._sink._output = output
    write._sink._run_id = run_id
    return write


def write_text(prefix: str, output: str, run_id: str, **kwargs) -> beam.PTransform:
    """`beam.io.WriteToText(prefix, **kwargs)`, its files named before they are written."""
    return _named(beam.io.WriteToText(prefix, **kwargs), _NamedTextSink, output, run_id)


def write_tfrecord(prefix: str, output: str, run_id: str, **kwargs) -> beam.PTransform:
    """`beam.io.WriteToTFRecord(prefix, **kwargs)`, its files named before they are written."""
    return _named(beam.io.WriteToTFRecord(prefix, **kwargs), _NamedTFRecordSink, output, run_id)


def temp_folders(output: str, prefixes, run_id: str) -> list:
    """The temporary folders (relative to `output`) of sinks writing under `prefixes`."""
    from earmark.pipelines import outputs
    out = []
    for prefix in prefixes:
        base, last = FileSystems.split(prefix)
        out.append(outputs.relative(output, fs.join(base, temp_folder(last, run_id))))
    return out
