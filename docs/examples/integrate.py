"""An integrating team's client, in Python: publish clips to clipguard and read their verdicts
(confluent-kafka), check a prompt (and, with --image, a prompt with an uploaded picture), ask
health and list and describe every service through server reflection (grpcio, grpcio-reflection). The test suite runs this file against separately started
stage processes (tests/interop.rs); docs/integrating.md explains each step.

    pip install confluent-kafka grpcio grpcio-tools grpcio-reflection grpcio-health-checking protobuf
    python integrate.py --brokers 127.0.0.1:9092 --grpc 127.0.0.1:50051 --proto schemas/proto \
        --image photo.png clip1.mp4 clip2.webm

Prints one JSON object: the verdicts by clip id, the prompt check, the input check, health, and
the services with
their methods. Exits 1 when a clip gets no verdict in time.
"""

import argparse
import hashlib
import importlib
import json
import os
import sys
import tempfile
import time
import uuid


def generate_stubs(proto_dir):
    """Python classes for clip.proto and services.proto, generated with grpcio-tools."""
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="clipguard-stubs-")
    files = [
        os.path.join(proto_dir, "clipguard", "v1", name) for name in ("clip.proto", "services.proto")
    ]
    args = ["protoc", f"-I{proto_dir}", f"--python_out={out}", f"--grpc_python_out={out}", *files]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed on {files}")
    sys.path.insert(0, out)
    clip = importlib.import_module("clipguard.v1.clip_pb2")
    services = importlib.import_module("clipguard.v1.services_pb2")
    services_grpc = importlib.import_module("clipguard.v1.services_pb2_grpc")
    return clip, services, services_grpc


def publish(producer, clip_pb2, path, audience):
    """One clip on clips.submitted: keyed by its clip id, inline bytes (under ~900 KiB; larger
    media goes to the object store and travels as a URI), with a W3C traceparent header."""
    data = open(path, "rb").read()
    clip_id = str(uuid.uuid4())
    msg = clip_pb2.ClipSubmitted(
        clip_id=clip_id,
        media=clip_pb2.MediaRef(
            inline=data, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data)
        ),
        audience=clip_pb2.AudienceContext(
            age_band=clip_pb2.AGE_BAND_ADULT if audience == "adult" else clip_pb2.AGE_BAND_UNDER_18,
            surface=clip_pb2.SURFACE_FEED,
        ),
        prompt="a red ball bouncing",
        source=os.path.basename(path),
        submitted_at_ms=int(time.time() * 1000),
    )
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    producer.produce(
        "clips.submitted",
        key=clip_id.encode(),
        value=msg.SerializeToString(),
        headers=[("traceparent", traceparent.encode())],
    )
    return clip_id


def read_verdicts(brokers, clip_pb2, wanted, timeout_s):
    """Reads clips.verdicts (compacted, keyed by clip id) from the beginning until every wanted
    clip has a verdict; a later record for the same clip with a higher revision replaces it."""
    from confluent_kafka import Consumer

    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"integrate-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(["clips.verdicts"])
    verdicts = {}
    until = time.time() + timeout_s
    try:
        while time.time() < until and not wanted.issubset(verdicts):
            m = consumer.poll(0.5)
            if m is None or m.error():
                continue
            v = clip_pb2.Verdict()
            v.ParseFromString(m.value())
            old = verdicts.get(v.clip_id)
            if old is None or v.revision >= old.revision:
                verdicts[v.clip_id] = v
    finally:
        consumer.close()
    return verdicts


def describe_services(channel):
    """Lists the server's services and describes each method, through server reflection (the
    v1alpha protocol grpcio-reflection speaks), the way grpcurl and Postman do."""
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    db = ProtoReflectionDescriptorDatabase(channel)
    pool = DescriptorPool(db)
    out = {}
    for name in db.get_services():
        service = pool.FindServiceByName(name)
        out[name] = [
            f"{m.name}({m.input_type.full_name}) returns ({m.output_type.full_name})"
            for m in service.methods
        ]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--brokers", required=True)
    ap.add_argument("--grpc", required=True, help="host:port of a classify worker's gRPC")
    ap.add_argument("--proto", required=True, help="the folder holding clipguard/v1/*.proto")
    ap.add_argument("--timeout-s", type=float, default=120)
    ap.add_argument("--image", help="a PNG or JPEG to check with a prompt (CheckInput)")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()

    import grpc
    from confluent_kafka import Producer
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    clip_pb2, services_pb2, services_grpc = generate_stubs(args.proto)

    producer = Producer({"bootstrap.servers": args.brokers, "enable.idempotence": True})
    ids = {publish(producer, clip_pb2, f, "adult"): f for f in args.files}
    if producer.flush(30) != 0:
        raise SystemExit("clips not acknowledged by the broker")

    channel = grpc.insecure_channel(args.grpc)
    moderation = services_grpc.ModerationStub(channel)
    started = time.time()
    check = moderation.CheckPrompt(
        services_pb2.CheckPromptRequest(
            prompt="a red ball bouncing on a lawn", audience=services_pb2.AUDIENCE_PUBLIC_FEED
        ),
        timeout=10,
    )
    check_ms = (time.time() - started) * 1000
    check_input = None
    if args.image:
        with open(args.image, "rb") as f:
            picture = f.read()
        started = time.time()
        answer = moderation.CheckInput(
            services_pb2.CheckInputRequest(
                prompt="animate this photo: she waves at the camera",
                images=[picture],
                audience=services_pb2.AUDIENCE_PUBLIC_FEED,
            ),
            timeout=30,
        )
        check_input = {
            "decision": clip_pb2.Decision.Name(answer.decision),
            "audience": answer.audience,
            "minor_present": answer.minor_present,
            "rationale": answer.verdict.rationale,
            "ms": round((time.time() - started) * 1000, 1),
        }
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
    services = describe_services(channel)

    verdicts = read_verdicts(args.brokers, clip_pb2, set(ids), args.timeout_s)
    result = {
        "verdicts": {
            clip_id: {
                "source": ids[clip_id],
                "decision": clip_pb2.Decision.Name(v.decision),
                "reasons": list(v.reasons),
                "rationale": v.rationale,
            }
            for clip_id, v in verdicts.items()
            if clip_id in ids
        },
        "check_prompt": {
            "decision": clip_pb2.Decision.Name(check.decision),
            "audience": check.audience,
            "rationale": check.rationale,
            "ms": round(check_ms, 1),
        },
        "check_input": check_input,
        "health": health_pb2.HealthCheckResponse.ServingStatus.Name(health.status),
        "services": services,
    }
    print(json.dumps(result, indent=2))
    missing = set(ids) - set(result["verdicts"])
    if missing:
        print(f"no verdict for {sorted(missing)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
