"""Every workload of fenlei, declared once.

The local supervisor, the sidecars' policy, the gateway's routes and authorisation, the
reflection catalog, the client, the stage streams and the Kubernetes generator all read
this table; adding a service is one entry here plus its package.

A workload is a gRPC server (`python -m MODULE` runs it) behind its own sidecar. Its name
is everything at once: the process, the mesh host, the SPIFFE account, the Kubernetes
Service, Deployment and ServiceAccount.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import ServiceDescriptor

from fenlei.v1 import (
    classifier_pb2,
    config_pb2,
    datasets_pb2,
    features_pb2,
    jobs_pb2,
    pipeline_pb2,
    preprocessor_pb2,
    registry_pb2,
    segmenter_pb2,
    telemetry_pb2,
)


@dataclass(frozen=True)
class Resources:
    """Kubernetes requests and limits of one container."""

    cpu: str = "250m"
    memory: str = "256Mi"
    cpu_limit: str = "2"
    memory_limit: str = "1Gi"


@dataclass(frozen=True)
class Workload:
    name: str
    summary: str  # one line for people: the manifests' comment, `fenlei status`
    module: str  # `python -m MODULE` serves it
    contract: tuple[ServiceDescriptor, ...] = ()  # public gRPC services: the gateway routes them
    stream: str = ""  # a stage's open-stream method (the pipeline and training send batches on it)
    calls: tuple[str, ...] = ()  # workloads it calls, through its sidecar
    describes_api: bool = False  # serves reflection for every public service (the gateway routes it there)
    writes_models: bool = False  # writes model artifacts (its Fit): the model volume is writable for it
    autoscale: tuple[int, int] = (1, 1)  # Kubernetes replicas: min, max (max > min: an HPA)
    # The only writer of its state (the registry's SQLite database): one replica, replaced
    # by stopping the old before starting the new (Kubernetes: strategy Recreate).
    single_writer: bool = False
    # gRPC services it serves that are not public: mesh-internal, for its callers only.
    internal: tuple[ServiceDescriptor, ...] = ()
    resources: Resources = Resources()

    @property
    def grpc_names(self) -> tuple[str, ...]:
        return tuple(service.full_name for service in self.contract)


def _service(module: Any, name: str) -> ServiceDescriptor:
    return module.DESCRIPTOR.services_by_name[name]


STAGE_NAMES = ("segmenter", "preprocessor", "features", "classifier")
_FITTING = Resources(memory="512Mi", memory_limit="2Gi")

WORKLOADS: tuple[Workload, ...] = (
    Workload(
        name="segmenter",
        summary="word segmentation (jieba / jieba-rs)",
        module="fenlei.segmenter.servicer",
        contract=(_service(segmenter_pb2, "Segmenter"),),
        stream="/fenlei.v1.Segmenter/SegmentStream",
        autoscale=(2, 8),
        resources=Resources(memory="384Mi"),
    ),
    Workload(
        name="preprocessor",
        summary="normalisation, stopwords, n-grams and word-class terms",
        module="fenlei.preprocessor.servicer",
        contract=(_service(preprocessor_pb2, "Preprocessor"),),
        stream="/fenlei.v1.Preprocessor/PreprocessStream",
        autoscale=(2, 8),
        resources=Resources(cpu="100m", cpu_limit="1", memory_limit="512Mi"),
    ),
    Workload(
        name="features",
        summary="vectorisation and feature selection; writes its artifacts during Fit",
        module="fenlei.features.servicer",
        contract=(_service(features_pb2, "Features"),),
        stream="/fenlei.v1.Features/TransformStream",
        writes_models=True,
        autoscale=(2, 8),
        resources=_FITTING,
    ),
    Workload(
        name="classifier",
        summary="linear models, scores, top-k and explanations; writes its artifacts during Fit",
        module="fenlei.classifier.servicer",
        contract=(_service(classifier_pb2, "Classifier"),),
        stream="/fenlei.v1.Classifier/PredictStream",
        writes_models=True,
        autoscale=(2, 8),
        resources=_FITTING,
    ),
    Workload(
        name="pipeline",
        summary="Classify, ClassifyBatch and ClassifyStream over open streams to the stages",
        module="fenlei.pipeline.servicer",
        contract=(_service(pipeline_pb2, "Pipeline"),),
        calls=(*STAGE_NAMES, "registry"),
        autoscale=(2, 8),
    ),
    Workload(
        name="registry",
        summary="model versions, lineage, aliases with history, experiments and feedback; backup and restore",
        module="fenlei.registry.servicer",
        contract=(_service(registry_pb2, "ModelRegistry"), _service(registry_pb2, "Experiments")),
        internal=(_service(registry_pb2, "ExperimentRouting"),),
        writes_models=True,
        single_writer=True,
        resources=Resources(cpu="100m", memory="256Mi", cpu_limit="1", memory_limit="1Gi"),
    ),
    Workload(
        name="catalog",
        summary="server reflection for the whole public API, behind the gateway",
        module="fenlei.gateway.catalog",
        describes_api=True,
        autoscale=(2, 2),
        resources=Resources(cpu="50m", memory="128Mi", cpu_limit="500m", memory_limit="256Mi"),
    ),
    Workload(
        name="datasets",
        summary="labelled corpora: validated uploads, stored once by content, read back in batches",
        module="fenlei.datasets.servicer",
        contract=(_service(datasets_pb2, "Datasets"),),
        internal=(_service(datasets_pb2, "DatasetPins"),),
        writes_models=True,
        single_writer=True,
        resources=Resources(cpu="100m", memory="256Mi", cpu_limit="1", memory_limit="1Gi"),
    ),
    Workload(
        name="jobs",
        summary="training and tuning jobs: a queue, workers that stream datasets through the stages, progress, reports",
        module="fenlei.jobs.servicer",
        contract=(_service(jobs_pb2, "Jobs"),),
        calls=(*STAGE_NAMES, "registry", "datasets"),
        writes_models=True,
        single_writer=True,
        resources=_FITTING,
    ),
    Workload(
        name="config",
        summary="live configuration with its history: log levels, limits, experiment weights, mesh scenarios, the gateway's deny list",
        module="fenlei.config.servicer",
        contract=(_service(config_pb2, "LiveConfig"),),
        calls=("registry",),
        single_writer=True,
        resources=Resources(cpu="50m", memory="128Mi", cpu_limit="500m", memory_limit="256Mi"),
    ),
    Workload(
        name="telemetry",
        summary="the mesh's status for dashboards: each process's state and load, who calls whom, the slowest traces",
        module="fenlei.telemetry.servicer",
        contract=(_service(telemetry_pb2, "Telemetry"),),
        resources=Resources(cpu="50m", memory="128Mi", cpu_limit="500m", memory_limit="256Mi"),
    ),
)

BY_NAME = {workload.name: workload for workload in WORKLOADS}
# The stages in the order a document passes them.
STAGES: tuple[Workload, ...] = tuple(BY_NAME[name] for name in STAGE_NAMES)
PUBLIC: tuple[Workload, ...] = tuple(w for w in WORKLOADS if w.contract)
CATALOG: Workload = next(w for w in WORKLOADS if w.describes_api)
# What the gateway calls: every public service and the catalog.
GATEWAY_CALLS: tuple[str, ...] = (*(w.name for w in PUBLIC), CATALOG.name)
# The service the gateway fronts: its health is the gateway's (/healthz, grpc.health.v1).
GATEWAY_FRONT: Workload = BY_NAME["pipeline"]


class UnknownWorkload(ValueError):
    pass


def workload(name: str) -> Workload:
    try:
        return BY_NAME[name]
    except KeyError:
        raise UnknownWorkload(f"no service named {name!r}; fenlei's services are {', '.join(BY_NAME)}") from None


def public_services() -> list[tuple[Workload, ServiceDescriptor]]:
    """Every public gRPC service with the workload that serves it."""
    return [(w, service) for w in PUBLIC for service in w.contract]


def stub_class(service: ServiceDescriptor) -> type:
    """The generated stub of a gRPC service (fenlei/v1/x.proto → fenlei.v1.x_pb2_grpc.NameStub)."""
    module = importlib.import_module(service.file.name.removesuffix(".proto").replace("/", ".") + "_pb2_grpc")
    return getattr(module, f"{service.name}Stub")
