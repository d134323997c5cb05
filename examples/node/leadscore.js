// Leadscore's clients for Node.js, from the .proto files (not reflection: reflection-built
// descriptors turn map fields into lists), and the standard error details decoded.
//
//   const { clients, errorDetails } = require("./leadscore");
//   const { leads, scoring, dialer } = clients("127.0.0.1:50051", { token: "ls_..." });
"use strict";
const path = require("path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const PROTO_DIR = process.env.LEADSCORE_PROTO_DIR || path.join(__dirname, "..", "..", "proto");

// keepCase: fields keep their proto names (lead_id), as the README's examples write them;
// without it they are camelCase and snake_case keys are silently dropped. 64-bit numbers come
// as strings (JavaScript numbers lose digits past 2^53), enums as their names.
const definition = protoLoader.loadSync(
  ["admin", "dialer", "lead", "routing", "scoring"].map((name) => `leadscore/v1/${name}.proto`),
  { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true, includeDirs: [PROTO_DIR] },
);
const v1 = grpc.loadPackageDefinition(definition).leadscore.v1;

// Channels compress what they send with gzip and take compressed answers; an answer of
// 10,000 explained scores is over grpc-js's 4 MiB default, so take up to Leadscore's 16 MiB.
const CHANNEL_OPTIONS = {
  "grpc.default_compression_algorithm": 2, // gzip
  "grpc.max_receive_message_length": 16 << 20,
  "grpc.keepalive_time_ms": 30000,
};

function clients(address, { token } = {}) {
  const options = { ...CHANNEL_OPTIONS };
  if (token) {
    // grpc-js sends call credentials on TLS channels only; on a plain loopback port the
    // token goes in the header from an interceptor.
    const bearer = (callOptions, next) =>
      new grpc.InterceptingCall(next(callOptions), {
        start(metadata, listener, nextStart) {
          metadata.set("authorization", `Bearer ${token}`);
          nextStart(metadata, listener);
        },
      });
    options.interceptors = [bearer];
  }
  const credentials = grpc.credentials.createInsecure();
  const make = (Service) => new Service(address, credentials, options);
  return {
    leads: make(v1.LeadService),
    scoring: make(v1.ScoringService),
    dialer: make(v1.DialerService),
    routing: make(v1.RoutingService),
    admin: make(v1.AdminService),
  };
}

// google.rpc.Status and the details Leadscore sends, as googleapis publishes them.
const RPC = new protobuf.Root();
protobuf.parse(`
syntax = "proto3";
package google.protobuf;
message Any { string type_url = 1; bytes value = 2; }
message Duration { int64 seconds = 1; int32 nanos = 2; }
`, RPC, { keepCase: true });
protobuf.parse(`
syntax = "proto3";
package google.rpc;
message Status { int32 code = 1; string message = 2; repeated google.protobuf.Any details = 3; }
message ErrorInfo { string reason = 1; string domain = 2; map<string, string> metadata = 3; }
message RetryInfo { google.protobuf.Duration retry_delay = 1; }
message BadRequest {
  message FieldViolation { string field = 1; string description = 2; }
  repeated FieldViolation field_violations = 1;
}
message ResourceInfo { string resource_type = 1; string resource_name = 2; string owner = 3; string description = 4; }
`, RPC, { keepCase: true });

// The details of a failed call, by name: errorInfo (reason, domain, metadata), badRequest
// (field_violations), retryInfo (retry_delay), resourceInfo; {} when it carries none.
function errorDetails(error) {
  const [bytes] = error.metadata ? error.metadata.get("grpc-status-details-bin") : [];
  if (!bytes) return {};
  const status = RPC.lookupType("google.rpc.Status").decode(bytes);
  const details = {};
  for (const any of status.details) {
    const name = any.type_url.split("/").pop(); // "google.rpc.BadRequest"
    const type = RPC.lookupType(name);
    const key = name.split(".").pop();
    details[key[0].toLowerCase() + key.slice(1)] = type.toObject(type.decode(any.value), { longs: String });
  }
  return details;
}

// A unary call as a promise.
function call(client, method, request, { deadlineSeconds = 10 } = {}) {
  const deadline = new Date(Date.now() + deadlineSeconds * 1000);
  return new Promise((resolve, reject) =>
    client[method](request, { deadline }, (error, answer) => (error ? reject(error) : resolve(answer))),
  );
}

module.exports = { clients, errorDetails, call, grpc };
