"""What a refused call says, read from the standard details Leadscore attaches to every error
(google.rpc.ErrorInfo, BadRequest, RetryInfo, ResourceInfo in `grpc-status-details-bin`), so a
client switches on the reason and the field rather than parse the text.

Needs the grpcio-status package (pip install grpcio-status).
"""

from google.rpc import error_details_pb2
from grpc_status import rpc_status


# What each detail says, one line or more.
SAYS = {
    error_details_pb2.ErrorInfo: lambda info: [
        f"  reason {info.reason} ({info.domain}) {dict(sorted(info.metadata.items()))}"
    ],
    error_details_pb2.BadRequest: lambda bad: [f"  field {v.field}: {v.description}" for v in bad.field_violations],
    error_details_pb2.RetryInfo: lambda retry: [f"  retry in {retry.retry_delay.ToTimedelta().total_seconds():.3f} s"],
    error_details_pb2.ResourceInfo: lambda resource: [f"  {resource.resource_type} {resource.resource_name!r}"],
}


def describe(error):
    """Lines saying why `error` (a grpc.RpcError) was refused: its code and text, then each detail."""
    lines = [f"refused: {error.code().name} {error.details()}"]
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        for kind, say in SAYS.items():
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                lines += say(message)
    return lines
