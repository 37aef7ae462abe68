"""Read back a Dataflow job that `--template_location` wrote, and ask questions of its graph.

With Runner v2 (the only one Beam 2.72 has), the template JSON carries no `steps`: it names
the staged portable pipeline (`sdkPipelineOptions.options.pipelineUrl`, a serialized
`beam_runner_api_pb2.Pipeline`) and the worker pool (container image, staged packages).
"""
import collections
import json

from apache_beam.portability import common_urns
from apache_beam.portability.api import beam_runner_api_pb2

RESHUFFLE_URN = common_urns.composites.RESHUFFLE.urn
GBK_URN = common_urns.primitives.GROUP_BY_KEY.urn
PARDO_URN = common_urns.primitives.PAR_DO.urn
DOCKER_URN = common_urns.environments.DOCKER.urn
STAGING_TO_URN = common_urns.artifact_roles.STAGING_TO.urn
FILE_TYPE_URNS = (common_urns.artifact_types.FILE.urn, common_urns.artifact_types.URL.urn)


def split_gcs(uri: str):
    assert uri.startswith("gs://"), uri
    bucket, _, blob = uri[len("gs://"):].partition("/")
    return bucket, blob


class Job:
    """A template file plus the pipeline proto it points at (read with `read_bytes(uri)`)."""

    def __init__(self, template_path: str, read_bytes):
        with open(template_path) as f:
            self.template = json.load(f)
        self.options = self.template["environment"]["sdkPipelineOptions"]["options"]
        self.pipeline_url = self.options["pipelineUrl"]
        self.pipeline = beam_runner_api_pb2.Pipeline.FromString(read_bytes(self.pipeline_url))
        self.transforms = self.pipeline.components.transforms
        self._parent = {child: tid for tid, t in self.transforms.items() for child in t.subtransforms}
        self._producer = {}  # pcollection id -> the leaf transform that outputs it
        for tid, t in self.transforms.items():
            if not t.subtransforms:
                for pcoll in t.outputs.values():
                    self._producer[pcoll] = tid

    # -- names -------------------------------------------------------------------------------
    def top_level_names(self) -> list:
        """Labels of the transforms applied directly to the pipeline (in proto order)."""
        names = []
        for root in self.pipeline.root_transform_ids:
            root_t = self.transforms[root]
            children = root_t.subtransforms if not root_t.spec.urn else [root]
            names += [self.transforms[c].unique_name for c in children]
        return names

    def by_name(self, name: str):
        matches = [tid for tid, t in self.transforms.items() if t.unique_name == name]
        assert len(matches) == 1, f"{len(matches)} transforms named {name!r}"
        return matches[0]

    def _under(self, name: str) -> list:
        return [tid for tid, t in self.transforms.items()
                if t.unique_name == name or t.unique_name.startswith(name + "/")]

    def reshuffles(self) -> list:
        return sorted(t.unique_name for t in self.transforms.values() if t.spec.urn == RESHUFFLE_URN)

    # -- graph -------------------------------------------------------------------------------
    def _ancestors(self, tid):
        while tid in self._parent:
            tid = self._parent[tid]
            yield tid

    def _is_reshuffle_barrier(self, tid) -> bool:
        """A GroupByKey inside a Reshuffle: where Dataflow breaks fusion."""
        return (self.transforms[tid].spec.urn == GBK_URN
                and any(self.transforms[a].spec.urn == RESHUFFLE_URN for a in self._ancestors(tid)))

    def _side_inputs(self, tid) -> set:
        t = self.transforms[tid]
        if t.spec.urn != PARDO_URN:
            return set()
        payload = beam_runner_api_pb2.ParDoPayload.FromString(t.spec.payload)
        return set(payload.side_inputs)

    def _main_inputs(self, tid) -> set:
        """Main-input PCollections of a transform (a composite: of its leaves, from outside)."""
        t = self.transforms[tid]
        side = set()
        for leaf in self._under(t.unique_name):
            leaf_t = self.transforms[leaf]
            side |= {leaf_t.inputs[n] for n in self._side_inputs(leaf) if n in leaf_t.inputs}
        return set(t.inputs.values()) - side

    def upstream(self, name: str, through_reshuffle: bool = True) -> set:
        """Labels of the leaf transforms that feed transform `name` through main inputs;
        with through_reshuffle=False the walk stops at a Reshuffle's GroupByKey, leaving
        what would be fused with `name` (side inputs never fuse, so they are not followed)."""
        seen, found = set(), set()
        queue = collections.deque(self._main_inputs(self.by_name(name)))
        while queue:
            pcoll = queue.popleft()
            if pcoll in seen or pcoll not in self._producer:
                continue
            seen.add(pcoll)
            leaf = self._producer[pcoll]
            if not through_reshuffle and self._is_reshuffle_barrier(leaf):
                continue
            found.add(self.transforms[leaf].unique_name)
            side = self._side_inputs(leaf)
            queue.extend(p for n, p in self.transforms[leaf].inputs.items() if n not in side)
        return found

    def reshuffle_separates(self, upstream_name: str, downstream_name: str) -> bool:
        """True when `upstream_name` feeds `downstream_name` and every such path crosses a
        Reshuffle (so Dataflow cannot fuse the two into one stage)."""
        def hits(names):
            return any(n == upstream_name or n.startswith(upstream_name + "/") for n in names)
        return (hits(self.upstream(downstream_name))
                and not hits(self.upstream(downstream_name, through_reshuffle=False)))

    def produced_by_reshuffle(self, name: str) -> bool:
        """True when each main input of `name` is the output of a Reshuffle."""
        inputs = self._main_inputs(self.by_name(name))
        return bool(inputs) and all(
            any(self.transforms[a].spec.urn == RESHUFFLE_URN and pcoll in self.transforms[a].outputs.values()
                for a in self._ancestors(self._producer[pcoll]))
            for pcoll in inputs)

    # -- environment -------------------------------------------------------------------------
    def docker_images(self) -> set:
        envs = self.pipeline.components.environments.values()
        return {beam_runner_api_pb2.DockerPayload.FromString(e.payload).container_image
                for e in envs if e.urn == DOCKER_URN}

    def template_images(self) -> set:
        pools = self.template["environment"]["workerPools"]
        return ({c["containerImage"] for p in pools for c in p.get("sdkHarnessContainerImages", [])}
                | {p["workerHarnessContainerImage"] for p in pools if "workerHarnessContainerImage" in p})

    def staged_artifacts(self) -> dict:
        """{staged name: gs:// path} over every environment's dependencies."""
        staged = {}
        for env in self.pipeline.components.environments.values():
            for dep in env.dependencies:
                if dep.role_urn != STAGING_TO_URN or dep.type_urn not in FILE_TYPE_URNS:
                    continue
                name = beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(
                    dep.role_payload).staged_name
                payload = (beam_runner_api_pb2.ArtifactUrlPayload if dep.type_urn.endswith("url:v1")
                           else beam_runner_api_pb2.ArtifactFilePayload).FromString(dep.type_payload)
                staged[name] = payload.url if hasattr(payload, "url") else payload.path
        return staged

    def template_packages(self) -> dict:
        pools = self.template["environment"]["workerPools"]
        return {p["name"]: p["location"] for pool in pools for p in pool.get("packages", [])}
