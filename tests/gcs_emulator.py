"""Run `gcp-storage-emulator` (in memory, on 127.0.0.1) for tests that need `gs://`.

    with GcsEmulator() as emu:       # starts it, sets STORAGE_EMULATOR_HOST
        client = emu.client()        # google-cloud-storage client, anonymous credentials
        client.create_bucket("bucket")
    # stopped, STORAGE_EMULATOR_HOST restored

Beam's GCS filesystem and google-cloud-storage both honour STORAGE_EMULATOR_HOST; pass
`--no_auth` to Beam so it does not spend ~20 s looking for default credentials.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

ENV_VAR = "STORAGE_EMULATOR_HOST"


def find_executable():
    """The emulator's console script: beside this interpreter first, then on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "gcp-storage-emulator")
    return here if os.access(here, os.X_OK) else shutil.which("gcp-storage-emulator")


def free_port(host="127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class GcsEmulator:
    """A `gcp-storage-emulator start --in-memory` subprocess on a free local port."""

    def __init__(self, host="127.0.0.1", port=None, startup_timeout_s=20.0):
        self.host = host
        self.port = port or free_port(host)
        self.url = f"http://{host}:{self.port}"
        self.startup_timeout_s = startup_timeout_s
        self._proc = None
        self._saved_env = None

    def start(self) -> "GcsEmulator":
        exe = find_executable()
        if not exe:
            raise RuntimeError("gcp-storage-emulator is not installed (pip install "
                               "gcp-storage-emulator)")
        self._proc = subprocess.Popen(
            [exe, "start", "--host", self.host, "--port", str(self.port), "--in-memory",
             "--quiet"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.startup_timeout_s
        while not self._answers():
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"gcp-storage-emulator exited with {self._proc.returncode}: "
                                   f"{err}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"gcp-storage-emulator did not answer on {self.url} within "
                                   f"{self.startup_timeout_s:.0f} s")
            time.sleep(0.1)
        self._saved_env = os.environ.get(ENV_VAR)
        os.environ[ENV_VAR] = self.url
        return self

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as r:
                return r.status == 200
        except urllib.error.HTTPError:
            return True  # it speaks HTTP: up
        except OSError:
            return False

    def stop(self) -> None:
        if self._saved_env is not None:
            os.environ[ENV_VAR] = self._saved_env
        elif os.environ.get(ENV_VAR) == self.url:
            del os.environ[ENV_VAR]
        self._saved_env = None
        proc, self._proc = self._proc, None
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc and proc.stderr:
            proc.stderr.close()

    def client(self):
        """A google-cloud-storage client talking to this emulator, no credentials."""
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.url})

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
