"""Progress lines: counts, rate, ETA, throttling, and one tracker per run and process."""
import logging

from earmark.model import progress


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_line_has_count_rate_and_eta():
    clock = FakeClock()
    p = progress.Progress("label", "windows", total=1000, every_seconds=5, clock=clock)
    clock.now = 10.0
    p.update(250)
    assert p.line() == "label: 250/1,000 windows, 25.0/s, 25 %, ETA 30s"
    clock.now = 20.0
    p.add_total(6000)  # planning found more audio
    assert p.line().endswith("4 %, ETA 9m00s")


def test_without_a_total_there_is_no_eta():
    clock = FakeClock()
    p = progress.Progress("prepare", "files", scope="this process, pid 1", clock=clock)
    clock.now = 4.0
    p.update(8)
    assert p.line() == "prepare: 8 files, 2.0/s (this process, pid 1)"


def test_logs_at_most_once_per_interval(caplog):
    clock = FakeClock()
    p = progress.Progress("prepare", "files", total=100, every_seconds=5, clock=clock)
    with caplog.at_level(logging.INFO, logger="earmark.progress"):
        for step in range(20):
            clock.now = step * 1.0
            p.update()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[0].startswith("prepare: 6/100 files")


def test_one_tracker_per_run():
    a = progress.tracker("run-a", "prepare", "files", 10)
    assert progress.tracker("run-a", "prepare", "files") is a
    assert progress.tracker("run-b", "prepare", "files") is not a


def test_durations_read_well():
    assert [progress.format_duration(s) for s in (0.4, 59, 62.4, 3725)] == ["0s", "59s", "1m02s", "1h02m"]
