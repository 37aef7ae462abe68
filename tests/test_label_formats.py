"""`earmark label`'s text formats: each writer's output read back by its one reader, the
bytes of ordinary values as they always were, and odd labels and file names whole."""
import numpy as np
import pytest

from earmark.model.segments import Segment
from earmark.pipelines import label_formats as lf

ODD_LABEL = 'snore, "loud" é'                 # a comma, a double quote and non-ASCII
ODD_FILE = 'room a/"n,1"\r\nété.wav'          # …and line breaks, in a file key


def segments():
    return [Segment(0.0, 1.5, "snore", 0.9, "a.wav", "0123456789ab"),
            Segment(2.25, 3.0, ODD_LABEL, 0.5, "a.wav", "0123456789ab"),
            Segment(10.0, 12.345, "other", 1.0, ODD_FILE, 'id,"x"')]


def test_segments_csv_bytes_of_ordinary_values():
    text = lf.segments_csv(segments()[:1])
    assert text == "file,start_s,end_s,label,confidence,model_id\na.wav,0.000,1.500,snore,0.9000,0123456789ab\n"


@pytest.mark.parametrize("write,read", [(lf.segments_csv, lf.read_segments_csv),
                                        (lf.segments_jsonl, lf.read_segments_jsonl)])
def test_segments_round_trip_through_utf8_bytes(write, read):
    data = write(segments()).encode()
    assert read(data.decode()) == segments()
    assert read(write([])) == []


def test_an_odd_label_is_quoted_as_csv_quotes_it():
    lines = lf.segments_csv(segments()[1:2]).splitlines()
    assert lines[1] == 'a.wav,2.250,3.000,"snore, ""loud"" é",0.5000,0123456789ab'


def test_scores_csv_bytes_of_ordinary_values_and_odd_labels_round_trip():
    scores = np.array([[0.1, 0.25], [0.12345, 1.0]], np.float32)
    assert lf.scores_csv(scores, ["snore", "other"], 0.48) == (
        "start_s,snore,other\n0.000,0.1000,0.2500\n0.480,0.1235,1.0000\n")
    text = lf.scores_csv(scores, [ODD_LABEL, "other"], 0.48).encode().decode()
    assert text.splitlines()[0] == 'start_s,"snore, ""loud"" é",other'
    starts, by_label = lf.read_scores_csv(text)
    assert starts.tolist() == [0.0, 0.48] and list(by_label) == [ODD_LABEL, "other"]
    assert by_label[ODD_LABEL].tolist() == [0.1, 0.1235]
    assert lf.read_scores_csv(lf.scores_csv(np.zeros((0, 2)), ["a", "b"], 0.48)) is None


@pytest.mark.parametrize("name", sorted(lf.OUTPUT_FORMATS))
def test_every_output_format_reads_back_what_its_writer_wrote(name):
    """OUTPUT_FORMATS: one entry a format, its writer beside its reader."""
    fmt = lf.OUTPUT_FORMATS[name]
    segs = segments()[:2]
    facts = {"scores": np.array([[0.25, 0.5], [1.0, 0.0]]), "labels": ["snore", ODD_LABEL],
             "hop_s": 0.5, "low_hz": 125.0, "high_hz": 7500.0}
    back = fmt.read(fmt.write(segs, facts))
    if name == "scores":
        assert back[0].tolist() == [0.0, 0.5] and back[1][ODD_LABEL].tolist() == [0.5, 0.0]
    elif isinstance(back, tuple):  # Raven and Audacity: read back as annotations
        rows, bad = back
        assert not bad and [(r.start_s, r.end_s, r.label) for r in rows] == [
            (s.start_s, s.end_s, s.label) for s in segs]
    else:
        assert back == segs
    assert (fmt.path("rec") == f"{fmt.folder}/rec{fmt.suffix}") if fmt.folder else fmt.file
