"""musicnn's numbers that describe it as an embedding base (`model.audio_bases.SPECS`),
apart from the network (`model.musicnn`, which imports TensorFlow): listing the bases, as
`earmark train --help` does, needs no TensorFlow."""

SAMPLE_RATE_HZ = 16000
WINDOW_SAMPLES = 48000          # 3 s: what musicnn was trained on
EMBEDDING_DIM = 753
CHECKPOINTS = {"MSD": "MSD_musicnn", "MTT": "MTT_musicnn"}
