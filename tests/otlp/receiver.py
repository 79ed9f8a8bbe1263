"""A minimal OTLP/HTTP trace receiver for ringway's tests.

Decodes each `POST /v1/traces` body with the official protobufs (PyPI's
opentelemetry-proto: ExportTraceServiceRequest) and appends one JSON line
per span to the file named by argv[1] (listening on port argv[2], by
default one the kernel picks), plus one line per request with its
headers (`{"request": {...}}`). Prints the port it listens on, then serves
until killed. A body that does not decode is answered 400 and recorded as
`{"error": ...}`.
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

OUT = sys.argv[1]


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def attrs(kvs):
    return {kv.key: value(kv.value) for kv in kvs}


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        lines = [{"request": {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}}}]
        try:
            req = ExportTraceServiceRequest()
            req.ParseFromString(body)
            # The whole message must be what the official schema knows.
            MessageToDict(req)
        except Exception as e:  # noqa: BLE001 - any decode failure is the finding
            lines.append({"error": repr(e)})
            self.answer(400, b"")
            self.write(lines)
            return
        for rs in req.resource_spans:
            resource = attrs(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    lines.append({
                        "span": {
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_span_id": s.parent_span_id.hex(),
                            "trace_state": s.trace_state,
                            "name": s.name,
                            "kind": s.kind,
                            "start": s.start_time_unix_nano,
                            "end": s.end_time_unix_nano,
                            "flags": s.flags,
                            "attributes": attrs(s.attributes),
                            "events": [{"name": e.name, "time": e.time_unix_nano} for e in s.events],
                            "status": {"code": s.status.code, "message": s.status.message},
                            "scope": ss.scope.name,
                            "resource": resource,
                        }
                    })
        self.write(lines)
        self.answer(200, ExportTraceServiceResponse().SerializeToString())

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def write(self, lines):
        with open(OUT, "a") as f:
            for line in lines:
                f.write(json.dumps(line) + "\n")

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[2]) if len(sys.argv) > 2 else 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
