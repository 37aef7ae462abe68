"""A sound event in time: what annotations hold, what labeling finds, what metrics compare."""
import dataclasses


@dataclasses.dataclass(frozen=True, order=True)
class Event:
    start_s: float
    end_s: float
    label: str

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s
