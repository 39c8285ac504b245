"""The seam between the stages (common.proto): field 1 of every stage message is its batch.

The pipeline and training forward a stage's stream answer as bytes and append the next
request's header; protobuf merges concatenated messages. That holds only if field 1 is the
batch everywhere, of the type the stage before answers with, if an answer carries nothing
else and if no header field takes number 1. The messages come from the descriptors; the
order of the stages from fenlei.services, which the stage streams read."""

from __future__ import annotations

import importlib
import pkgutil

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message

import fenlei.v1
from fenlei import services
from fenlei.v1 import pipeline_pb2

PIPELINE = pipeline_pb2.DESCRIPTOR.services_by_name["Pipeline"]


def contract_services() -> list[ServiceDescriptor]:
    modules = [importlib.import_module(f"fenlei.v1.{m.name}") for m in pkgutil.iter_modules(fenlei.v1.__path__) if m.name.endswith("_pb2")]
    return [service for module in modules for service in module.DESCRIPTOR.services_by_name.values()]


def stage_streams() -> list[MethodDescriptor]:
    """The bidirectional methods of every service the pipeline calls."""
    found = [
        method
        for service in contract_services()
        if service.full_name != PIPELINE.full_name
        for method in service.methods
        if method.client_streaming and method.server_streaming
    ]
    assert len(found) >= 4, [m.full_name for m in found]
    return found


def stage_chain() -> list[MethodDescriptor]:
    """The stage streams in the order a document passes them (fenlei.services.STAGES, as gRPC paths)."""
    by_name = {method.full_name: method for method in stage_streams()}
    chain = [by_name[stage.stream.strip("/").replace("/", ".")] for stage in services.STAGES]
    assert sorted(m.full_name for m in chain) == sorted(by_name), "a stage stream of the contract is not in fenlei.services.STAGES"
    return chain


def pipeline_batch_methods() -> list[MethodDescriptor]:
    """The pipeline's methods that take documents in batches: it answers them with the classifier's answers."""
    found = [method for method in PIPELINE.methods if _is_batch(method.input_type.fields_by_number.get(1))]
    assert len(found) >= 2, [m.full_name for m in found]
    return found


def _is_batch(field: FieldDescriptor | None) -> bool:
    return field is not None and field.is_repeated and field.type == FieldDescriptor.TYPE_MESSAGE


def batch_type(message: Descriptor) -> str:
    return message.fields_by_number[1].message_type.full_name


def test_field_1_of_every_stage_message_is_its_batch() -> None:
    methods = [*stage_streams(), *pipeline_batch_methods()]
    messages = {message.full_name: message for method in methods for message in (method.input_type, method.output_type)}
    not_batches = [name for name, message in messages.items() if not _is_batch(message.fields_by_number.get(1))]
    assert not_batches == [], "field 1 must be the repeated message field that carries the batch"


def test_each_stage_takes_the_batch_the_stage_before_answers_with() -> None:
    chain = stage_chain()
    for batch_method in pipeline_batch_methods():
        flow = [
            batch_method.input_type,
            *(m for method in chain for m in (method.input_type, method.output_type)),
            batch_method.output_type,
        ]
        # (what is sent, what it is sent as): the caller's documents, then each stage's answer into the next request.
        for sent, received in zip(flow[::2], flow[1::2]):
            assert batch_type(sent) == batch_type(received), f"{sent.full_name} field 1 goes into {received.full_name} field 1"


def test_stage_answers_carry_nothing_but_their_batch() -> None:
    # Any other field would ride into the next stage's request as whatever its number means there.
    extra = {m.output_type.full_name: [f.name for f in m.output_type.fields if f.number != 1] for m in stage_streams()}
    assert {name: fields for name, fields in extra.items() if fields} == {}


def _with_header(message_type: Descriptor) -> Message:
    """A message of that type with every field but its batch set, as a header is."""
    message = message_factory.GetMessageClass(message_type)()
    for field in message_type.fields:
        if field.number == 1:
            continue
        value = getattr(message, field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            value.add() if field.is_repeated else value.SetInParent()
            continue
        sample = {
            FieldDescriptor.TYPE_STRING: "x",
            FieldDescriptor.TYPE_BYTES: b"x",
            FieldDescriptor.TYPE_BOOL: True,
            FieldDescriptor.TYPE_ENUM: field.enum_type.values[-1].number if field.enum_type else 0,
        }.get(field.type, 1)
        value.append(sample) if field.is_repeated else setattr(message, field.name, sample)
    assert message.ListFields(), f"{message_type.full_name} has no header"
    return message


def _answer(message_type: Descriptor, documents: int) -> bytes:
    message = message_factory.GetMessageClass(message_type)()
    for _ in range(documents):
        getattr(message, message_type.fields_by_number[1].name).add()
    return message.SerializeToString()


def test_answers_and_headers_concatenate_into_the_next_request() -> None:
    """On the wire, as the code does it: answers + a header parse as the next message, the
    batch whole and the header untouched (no header field is number 1)."""
    streams = stage_chain()
    links = [(before.output_type, after.input_type, 1) for before, after in zip(streams, streams[1:])]
    # The pipeline joins several classifier answers (one per stage batch) under its own header.
    links += [(streams[-1].output_type, method.output_type, 3) for method in pipeline_batch_methods()]
    for answer_type, request_type, answers in links:
        header = _with_header(request_type)
        joined = message_factory.GetMessageClass(request_type).FromString(_answer(answer_type, 2) * answers + header.SerializeToString())
        batch = request_type.fields_by_number[1].name
        assert len(getattr(joined, batch)) == 2 * answers, f"{answer_type.full_name} into {request_type.full_name}"
        joined.ClearField(batch)
        assert joined == header, f"{request_type.full_name}: the header changed in the concatenation"


def test_a_stage_answer_keeps_its_values_in_the_next_request() -> None:
    """The same, with values."""
    from fenlei.v1 import classifier_pb2, common_pb2, features_pb2, preprocessor_pb2, segmenter_pb2

    answer = segmenter_pb2.SegmentStreamResponse(documents=[common_pb2.TokenizedDocument(id="a", tokens=["北京", "大学"])])
    header = preprocessor_pb2.PreprocessStreamRequest(model=common_pb2.ModelRef(name="m", version="v1"))
    merged = preprocessor_pb2.PreprocessStreamRequest.FromString(answer.SerializeToString() + header.SerializeToString())
    assert list(merged.documents[0].tokens) == ["北京", "大学"] and merged.model.version == "v1"
    vectors = features_pb2.TransformStreamResponse(vectors=[common_pb2.FeatureVector(id="a", indices=[3], values=[0.5])])
    predict = classifier_pb2.PredictStreamRequest.FromString(vectors.SerializeToString())
    assert list(predict.vectors[0].indices) == [3]
