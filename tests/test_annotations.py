import pytest

from earmark.model.annotations import (
    AnnotationRow, match_recordings, to_events, parse_audacity, parse_csv, parse_file,
    parse_raven, read_table, table_recording_name,
)
from earmark.model.events import Event

RAVEN_COLUMNS = ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)",
                 "Low Freq (Hz)", "High Freq (Hz)", "Annotation"]


def raven(rows, columns=RAVEN_COLUMNS, newline="\n"):
    """A Raven selection table: tab-separated header and rows."""
    lines = ["\t".join(columns)] + ["\t".join(str(cell) for cell in row) for row in rows]
    return newline.join(lines) + newline


def both_views(selection, begin, end, label):
    """The two rows Raven writes for one selection."""
    return [[selection, "Spectrogram 1", 1, begin, end, 100, 2000, label],
            [selection, "Waveform 1", 1, begin, end, 0, 0, label]]


def spans(rows):
    return [(r.file, r.start_s, r.end_s, r.label, r.line) for r in rows]


def reasons(bad):
    return [(b.line, b.reason) for b in bad]


def row(start_s, end_s, label="snore", file=None, source="t", line=1):
    return AnnotationRow(file, start_s, end_s, label, source, line)


# ---------------------------------------------------------------- Raven

def test_raven_counts_each_selection_once_across_views():
    text = raven(both_views(1, 1.5, 2.5, "snore") + both_views(2, 10, 12.25, "cough"))
    rows, bad = parse_raven(text, "rec.selections.txt")
    assert bad == []
    assert spans(rows) == [(None, 1.5, 2.5, "snore", 2), (None, 10.0, 12.25, "cough", 4)]
    assert rows[0].source == "rec.selections.txt"


def test_raven_without_selection_column_counts_every_row():
    columns = ["Begin Time (s)", "End Time (s)", "Annotation"]
    rows, bad = parse_raven(raven([[1, 2, "a"], [1, 2, "a"]], columns), "t")
    assert bad == [] and len(rows) == 2


def test_raven_columns_in_any_order_with_extras_crlf_bom_trailing_lines():
    columns = ["Annotation", "Notes", "End Time (s)", "Selection", "Begin Time (s)", "Delta Time (s)"]
    text = "\ufeff" + raven([["snore", "loud one", 4, 1, 3, 1], ["cough", "", 9, 2, 8.5, 0.5]],
                            columns, newline="\r\n") + "\r\n\r\n"
    rows, bad = parse_raven(text, "t")
    assert bad == []
    assert spans(rows) == [(None, 3.0, 4.0, "snore", 2), (None, 8.5, 9.0, "cough", 3)]


def test_raven_begin_file_names_the_recording():
    columns = RAVEN_COLUMNS + ["Begin File"]
    text = raven([r + ["night1.wav"] for r in both_views(1, 1, 2, "snore")]
                 + [both_views(2, 3, 4, "cough")[0] + ["sub/night2.wav"]], columns)
    rows, bad = parse_raven(text, "t")
    assert bad == []
    assert spans(rows) == [("night1.wav", 1.0, 2.0, "snore", 2), ("sub/night2.wav", 3.0, 4.0, "cough", 4)]


def test_raven_file_offset_places_the_event_within_its_file():
    # a two-file sequence: Begin Time counts from the first file's start
    columns = RAVEN_COLUMNS + ["Begin File", "File Offset (s)"]
    text = raven([[1, "Spectrogram 1", 1, 5, 6.5, 0, 0, "snore", "a.wav", 5],
                  [2, "Spectrogram 1", 1, 3605, 3607, 0, 0, "cough", "b.wav", 5]], columns)
    rows, bad = parse_raven(text, "t")
    assert bad == []
    assert spans(rows) == [("a.wav", 5.0, 6.5, "snore", 2), ("b.wav", 5.0, 7.0, "cough", 3)]


def test_raven_label_column_chooses_another_column():
    columns = RAVEN_COLUMNS[:-1] + ["Species"]
    rows, bad = parse_raven(raven(both_views(1, 1, 2, "Turdus merula"), columns), "t",
                            label_column="Species")
    assert bad == [] and spans(rows) == [(None, 1.0, 2.0, "Turdus merula", 2)]


def test_raven_without_the_label_column_is_one_bad_file():
    columns = RAVEN_COLUMNS[:-1] + ["Species"]
    rows, bad = parse_raven(raven(both_views(1, 1, 2, "x"), columns), "t.selections.txt")
    assert rows == []
    assert reasons(bad) == [(0, "no_label_column")]
    assert "Species" in bad[0].detail and "--label-column" in bad[0].detail
    assert bad[0].source == "t.selections.txt"


def test_raven_without_time_columns_is_unknown_format():
    rows, bad = parse_raven("Selection\tAnnotation\n1\tx\n", "t")
    assert rows == [] and reasons(bad) == [(0, "unknown_format")]


def test_raven_bad_rows_are_reported_and_good_rows_survive():
    text = raven([
        [1, "Spectrogram 1", 1, 1, 2, 0, 0, "good"],
        [2, "Spectrogram 1", 1, "abc", 2, 0, 0, "x"],     # line 3: not a number
        [3, "Spectrogram 1", 1, 1, 2, 0, "x"],            # line 4: a column short: no label
        [4, "Spectrogram 1", 1, 5, 5, 0, 0, "x"],         # line 5: end == start
        [5, "Spectrogram 1", 1, -1, 2, 0, 0, "x"],        # line 6: negative start
        [6, "Spectrogram 1", 1, 1, 2, 0, 0, "  "],        # line 7: empty label
        [6, "Waveform 1", 1, 1, 2, 0, 0, "  "],           # same selection: not reported twice
        [7, "Spectrogram 1", 1, 1, "nan", 0, 0, "x"],     # line 9: not finite
        [8, "Spectrogram 1", 1, 7, 8, 0, 0, "also good"],
    ])
    rows, bad = parse_raven(text, "t")
    assert spans(rows) == [(None, 1.0, 2.0, "good", 2), (None, 7.0, 8.0, "also good", 10)]
    assert reasons(bad) == [(3, "bad_row"), (4, "no_label"), (5, "end_not_after_start"),
                            (6, "negative_start"), (7, "no_label"), (9, "bad_row")]
    assert all(b.source == "t" and b.detail for b in bad)


def test_raven_rows_without_their_empty_trailing_cells_are_read_as_raven_writes_them():
    """Raven leaves out empty trailing cells (a Waveform row has no measurement cell) and
    may end its header with a tab: such rows are whole events, never bad rows."""
    text = ("Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tAnnotation\tNotes\t\r\n"
            "1\tSpectrogram 1\t1\t1.0\t2.0\tsnore\r\n"            # no Notes cell
            "1\tWaveform 1\t1\t1.0\t2.0\tsnore\t\t\r\n"          # an empty Notes, a tab more
            "2\tSpectrogram 1\t1\t3.0\t4.0\tcough\tloud\r\n"
            "3\tSpectrogram 1\t1\t5.0\t6.0\tsnore\tx\ty\r\n")     # a cell past the header
    rows, bad = parse_raven(text, "t")
    assert spans(rows) == [(None, 1.0, 2.0, "snore", 2), (None, 3.0, 4.0, "cough", 4)]
    assert reasons(bad) == [(5, "bad_row")]


# ---------------------------------------------------------------- Audacity

def test_audacity_labels_with_frequency_lines_spaces_and_decimal_comma():
    text = ("1.000000\t2.500000\tloud snore\n"
            "\\\t100.000000\t2000.000000\n"      # Audacity's frequency line: backslash, tab
            "3,5\t4,25\tcough\r\n"
            "\t100.0\t2000.0\n"                  # a frequency line starting with a tab
            "\n")
    rows, bad = parse_audacity(text, "rec.txt")
    assert bad == []
    assert spans(rows) == [(None, 1.0, 2.5, "loud snore", 1), (None, 3.5, 4.25, "cough", 3)]


def test_audacity_bad_rows():
    text = ("2.000000\t2.000000\tpoint\n"       # point label
            "1.0\t2.0\t\n"                       # empty label
            "1.0\t2.0\n"                         # no label at all
            "one\t2.0\tx\n"                      # not a number
            "1.0\n"                              # one column
            "-0.5\t1.0\tx\n"                     # negative start
            "5.0\t6.0\tgood\n")
    rows, bad = parse_audacity(text, "t")
    assert spans(rows) == [(None, 5.0, 6.0, "good", 7)]
    assert reasons(bad) == [(1, "end_not_after_start"), (2, "no_label"), (3, "no_label"),
                            (4, "bad_row"), (5, "bad_row"), (6, "negative_start")]


# ---------------------------------------------------------------- CSV

def test_csv_with_quoted_labels_extra_columns_and_bom():
    text = ("\ufefffile,start_s,end_s,label,annotator\r\n"
            'night 1.wav,1,2,"snore, loud",ann\r\n'
            '"sub/b.flac",3.5,4,"multi\nline",bob\r\n'
            ",5,6,unnamed,\r\n"
            "a.wav,7,8,x,y\r\n"
            "a.wav,9,10,z,,,\r\n")        # a spreadsheet's trailing empty cells
    rows, bad = parse_csv(text, "labels.csv")
    assert bad == []
    assert spans(rows) == [("night 1.wav", 1.0, 2.0, "snore, loud", 2),
                           ("sub/b.flac", 3.5, 4.0, "multi\nline", 3),
                           (None, 5.0, 6.0, "unnamed", 5), ("a.wav", 7.0, 8.0, "x", 6),
                           ("a.wav", 9.0, 10.0, "z", 7)]


def test_csv_bad_rows():
    text = ("label,end_s,start_s,file\n"
            "x,2,1,a.wav\n"
            "x,2,1\n"            # line 3: a column short
            "x,2,abc,a.wav\n"    # line 4: not a number
            "x,1,2,a.wav\n"      # line 5: end before start
            "x,1,-1,a.wav\n"     # line 6: negative start
            ",2,1,a.wav\n"       # line 7: empty label
            ",,,\n"              # a spreadsheet's empty row: skipped
            "y,4,3,b.wav\n")
    rows, bad = parse_csv(text, "t.csv")
    assert spans(rows) == [("a.wav", 1.0, 2.0, "x", 2), ("b.wav", 3.0, 4.0, "y", 9)]
    assert reasons(bad) == [(3, "bad_row"), (4, "bad_row"), (5, "end_not_after_start"),
                            (6, "negative_start"), (7, "no_label")]


def test_csv_header_problems():
    assert reasons(parse_csv("file,start_s,end_s\na,1,2\n", "t")[1]) == [(0, "no_label_column")]
    assert reasons(parse_csv("a,1,2,x\n", "t")[1]) == [(0, "unknown_format")]
    assert reasons(parse_csv("", "t")[1]) == [(0, "unknown_format")]


# ---------------------------------------------------------------- parse_file

def test_parse_file_detects_the_format():
    table = raven(both_views(1, 1, 2, "snore")).encode()
    assert spans(parse_file("rec.Table.1.selections.txt", table)[0]) == [(None, 1.0, 2.0, "snore", 2)]
    assert spans(parse_file("exported.txt", table)[0]) == [(None, 1.0, 2.0, "snore", 2)]  # by header
    assert spans(parse_file("rec.txt", b"1\t2\tsnore\n")[0]) == [(None, 1.0, 2.0, "snore", 1)]
    assert spans(parse_file("L.CSV", b"file,start_s,end_s,label\na,1,2,x\n")[0]) == [("a", 1.0, 2.0, "x", 2)]
    rows, bad = parse_file("rec.selections.txt", "\ufeff".encode() + raven(both_views(1, 1, 2, "é")).encode())
    assert bad == [] and rows[0].label == "é" and rows[0].source == "rec.selections.txt"


def test_parse_file_label_column():
    table = raven(both_views(1, 1, 2, "owl"), RAVEN_COLUMNS[:-1] + ["Species"]).encode()
    assert parse_file("r.selections.txt", table, label_column="Species")[0][0].label == "owl"
    assert reasons(parse_file("r.selections.txt", table)[1]) == [(0, "no_label_column")]


def test_read_table_decodes_as_the_tools_write():
    """UTF-8 (with or without BOM), UTF-16 with a BOM (LE or BE), Windows-1252 (Raven on
    Windows) as a fallback that says so; anything else is a bad table naming the flag."""
    table = raven(both_views(1, 1, 2, "râle"), newline="\r\n")
    for data, encoding in [(table.encode("utf-8"), "utf-8"),
                           (b"\xef\xbb\xbf" + table.encode("utf-8"), "utf-8-sig"),
                           (table.encode("utf-16"), "utf-16"),  # BOM + native order
                           (b"\xfe\xff" + table.encode("utf-16-be"), "utf-16"),
                           (b"\xff\xfe" + table.encode("utf-16-le"), "utf-16"),
                           (table.encode("cp1252"), "cp1252")]:
        read = read_table("rec.selections.txt", data)
        assert (read.format, read.encoding, read.bad) == ("Raven", encoding, [])
        assert spans(read.rows) == [(None, 1.0, 2.0, "râle", 2)]
    # an encoding named by the user wins over the fallback
    assert read_table("rec.txt", "1\t2\tcafé\n".encode("latin-1"),
                      encoding="latin-1").rows[0].label == "café"
    rows, bad = parse_file("rec.txt", b"1\t2\t\x81\xff\n")  # neither UTF-8 nor cp1252
    assert rows == [] and reasons(bad) == [(0, "undecodable")] and bad[0].source == "rec.txt"
    assert "byte 0x81 at offset 4" in bad[0].detail and "--annotation-encoding" in bad[0].detail
    assert reasons(parse_file("rec.txt", b"1\t2\ta\n", encoding="klingon")[1]) == \
        [(0, "unknown_encoding")]
    assert reasons(parse_file("rec.json", b"{}")[1]) == [(0, "unknown_format")]


# ---------------------------------------------------------------- matching

@pytest.mark.parametrize("name,expected", [
    ("rec.Table.1.selections.txt", "rec"),
    ("rec.selections.txt", "rec"),
    ("rec.flac.selections.txt", "rec.flac"),
    ("rec.flac.Table.12.selections.txt", "rec.flac"),
    ("rec.txt", "rec"),
    ("night 1 [a].txt", "night 1 [a]"),
    ("labels.csv", "labels"),
    ("sub/dir/rec.Table.1.selections.txt", "rec"),
    ("sub.d/rec", "rec"),
    ("rec.BirdNET.selection.table.txt", "rec"),     # BirdNET-Analyzer
    ("rec.birdnet.Selection.Table.txt", "rec"),
    ("rec.BirdNET.results.csv", "rec"),
    ("rec.audacity.txt", "rec"),                     # Audacity
])
def test_table_recording_name(name, expected):
    assert table_recording_name(name) == expected


def matched(tables, keys):
    """match_recordings with each recording's rows as Events (rows keep their provenance)."""
    rows, bad = match_recordings(tables, keys)
    assert all(r.source and r.line for found in rows.values() for r in found)
    return {key: to_events(found) for key, found in rows.items()}, bad


def test_match_by_table_name_prefers_the_same_folder():
    keys = ["rec.flac", "sub/rec.flac", "other/rec.wav", "solo/only.wav"]
    tables = [("sub/rec.Table.1.selections.txt", [row(3, 4, line=3), row(1, 2, line=2)]),
              ("rec.txt", [row(5, 6)]),
              ("elsewhere/only.selections.txt", [row(7, 8)])]
    events, bad = matched(tables, keys)
    assert bad == []
    assert events == {"sub/rec.flac": [Event(1, 2, "snore"), Event(3, 4, "snore")],
                      "rec.flac": [Event(5, 6, "snore")],
                      "solo/only.wav": [Event(7, 8, "snore")]}


def test_match_by_table_name_with_extension_in_it():
    keys = ["rec.flac", "rec.wav"]
    events, bad = matched([("rec.flac.selections.txt", [row(1, 2)])], keys)
    assert bad == [] and events == {"rec.flac": [Event(1, 2, "snore")]}


def test_match_by_table_name_ambiguous_and_missing():
    keys = ["a/rec.flac", "b/rec.flac", "sub/two.wav", "sub/two.flac"]
    tables = [("rec.selections.txt", [row(1, 2, line=2), row(3, 4, line=3)]),
              ("sub/two.txt", [row(1, 2)]),
              ("gone.txt", [row(1, 2, source="gone.txt", line=7)])]
    events, bad = matched(tables, keys)
    assert events == {}
    assert [(b.source, b.line, b.reason) for b in bad] == [
        ("t", 2, "ambiguous_recording"), ("t", 3, "ambiguous_recording"),
        ("t", 1, "ambiguous_recording"), ("gone.txt", 7, "missing_recording")]
    assert "a/rec.flac" in bad[0].detail and "b/rec.flac" in bad[0].detail


def test_match_empty_table_means_annotated_without_events():
    keys = ["sub/quiet.wav", "x/dup.wav", "y/dup.wav"]
    events, bad = matched(
        [("sub/quiet.selections.txt", []), ("dup.txt", []), ("none.txt", [])], keys)
    assert events == {"sub/quiet.wav": []}
    assert [(b.source, b.line, b.reason) for b in bad] == [
        ("dup.txt", 0, "ambiguous_recording"), ("none.txt", 0, "missing_recording")]


def test_match_rows_naming_a_file():
    keys = ["night 1 [a].wav", "sub/b.flac", "x/dup.wav", "y/dup.wav", "t/beside.wav", "u/beside.wav"]
    rows = [row(1, 2, file="night 1 [a].wav"),        # exact key
            row(3, 4, file="b.flac"),                 # unique base name
            row(5, 6, file="elsewhere/b.flac"),       # unique base name, other folder
            row(1, 2, file="dup.wav", line=4),        # two with that base name
            row(1, 2, file="nope.wav", line=5),       # none
            row(1, 2, file="beside.wav", line=6)]     # next to the table
    events, bad = matched([("t/labels.csv", rows)], keys)
    assert events == {"night 1 [a].wav": [Event(1, 2, "snore")],
                      "sub/b.flac": [Event(3, 4, "snore"), Event(5, 6, "snore")],
                      "t/beside.wav": [Event(1, 2, "snore")]}
    assert reasons(bad) == [(4, "ambiguous_recording"), (5, "missing_recording")]


def test_match_names_are_literal_not_patterns():
    keys = ["night 1 [a].wav", "night 1 a.wav", "rec*.wav", "recX.wav", "r?c.flac", "rac.flac",
            "café/nuit été.flac", "cafe/nuit ete.flac"]
    tables = [("night 1 [a].txt", [row(1, 2, "bracket")]),
              ("labels.csv", [row(1, 2, "star", file="rec*.wav"),
                              row(3, 4, "question", file="r?c.flac"),
                              row(5, 6, "nothing", file="rec[X].wav", line=9)]),
              ("café/nuit été.selections.txt", [row(1, 2, "unicode")])]
    events, bad = matched(tables, keys)
    assert events == {"night 1 [a].wav": [Event(1, 2, "bracket")],
                      "rec*.wav": [Event(1, 2, "star")],
                      "r?c.flac": [Event(3, 4, "question")],
                      "café/nuit été.flac": [Event(1, 2, "unicode")]}
    assert reasons(bad) == [(9, "missing_recording")]


def test_match_rows_with_file_do_not_claim_the_table_recording():
    keys = ["labels.wav", "a.wav"]
    events, bad = matched([("labels.csv", [row(1, 2, file="a.wav")])], keys)
    assert bad == [] and events == {"a.wav": [Event(1, 2, "snore")]}


def test_match_a_full_path_from_another_machine_by_its_trailing_folders():
    keys = ["site A/rec.wav", "site B/rec.wav", "solo.wav"]
    rows = [row(1, 2, file="D:\\survey\\site A\\rec.wav", line=2),   # Windows path
            row(3, 4, file="/home/x/site B/rec.wav", line=3),            # another machine's
            row(5, 6, file="C:\\solo.wav", line=4),
            row(7, 8, file="/elsewhere/rec.wav", line=5)]                 # either: ambiguous
    events, bad = matched([("birdnet.selections.txt", rows)], keys)
    assert events == {"site A/rec.wav": [Event(1, 2, "snore")],
                      "site B/rec.wav": [Event(3, 4, "snore")], "solo.wav": [Event(5, 6, "snore")]}
    assert reasons(bad) == [(5, "ambiguous_recording")]
    assert "site A/rec.wav" in bad[0].detail and "site B/rec.wav" in bad[0].detail


def test_csv_reads_other_tools_column_names_and_the_label_column():
    text = ("Start (s),End (s),Scientific name,Common name,Confidence,File\n"
            "1.5,4.5,Porzana carolina,Sora,0.8,/data/rec.wav\n")
    assert spans(parse_csv(text, "t", label_column="Common Name")[0]) == \
        [("/data/rec.wav", 1.5, 4.5, "Sora", 2)]
    assert reasons(parse_csv(text, "t")[1]) == [(0, "no_label_column")]


def test_raven_begin_path_and_offset_and_a_bad_row_keeps_its_file():
    columns = ["Selection", "Begin Time (s)", "End Time (s)", "Begin Path", "File Offset (s)",
               "Annotation"]
    rows, bad = parse_raven(raven([[1, 12, 13.5, "C:\\a\\r2.wav", 2, "x"],
                                   [2, 20, 21, "C:\\a\\r3.wav", 0.5, ""],
                                   [3, "?", 21, "C:\\a\\r3.wav", 0.5, "y"]], columns), "t")
    assert spans(rows) == [("C:\\a\\r2.wav", 2.0, 3.5, "x", 2)]
    assert [(b.reason, b.span_s, b.file) for b in bad] == [
        ("no_label", (0.5, 1.5), "C:\\a\\r3.wav"), ("bad_row", None, "C:\\a\\r3.wav")]
