"""The runner of earmark's pipelines on one machine (`--runner DirectRunner`, the default):
Beam's FnApiRunner, as Beam's DirectRunner runs a batch pipeline, without the Prism runner
that the DirectRunner of Beam 2.72 tries first for some pipelines (prepare's, not label's).

Prism is a Go binary the DirectRunner downloads from GitHub at first use. Offline, every run
tried the download, fell back, and left an empty `beam-temp*` folder in the system's
temporary folder (a command writing outside its output folder); online, earmark's
pipelines would have run on a runner they are neither tested nor measured on, where
`--direct_num_workers` and `--direct_running_mode` do not apply.
"""
import apache_beam as beam
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.runners.direct.direct_runner import SwitchingDirectRunner

class LocalRunner(SwitchingDirectRunner):
    """DirectRunner's FnApiRunner path, always (earmark's pipelines are batch pipelines)."""

    def is_fnapi_compatible(self):
        """True, as for the FnApiRunner it runs on. `Pipeline.run` otherwise first rebuilds
        the whole pipeline from its runner-API proto as a check (a round trip the
        DirectRunner skips for batch by its class name): about 0.25 s of a `label` run's
        start."""
        return True

    def run_pipeline(self, pipeline, options):
        from apache_beam.portability.api import beam_provision_api_pb2
        from apache_beam.runners.portability.fn_api_runner import fn_runner
        from apache_beam.runners.portability.portable_runner import JobServiceHandle
        encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
        info = fn_runner.ExtendedProvisionInfo(
            beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
        return fn_runner.FnApiRunner(provision_info=info).run_pipeline(pipeline, options)


def new_pipeline(options) -> beam.Pipeline:
    """A Pipeline for `options`: on `LocalRunner` where they name the DirectRunner (any
    case, with or without `Runner`, as Beam reads it) or no runner, else on theirs."""
    runner = options.view_as(StandardOptions).runner
    direct = runner is None or (isinstance(runner, str) and
                                runner.lower().removesuffix("runner") == "direct")
    return beam.Pipeline(runner=LocalRunner() if direct else None, options=options)
