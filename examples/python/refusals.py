"""What a refused call says, read from the standard details Leadscore attaches to every error
(google.rpc.ErrorInfo, BadRequest, RetryInfo, ResourceInfo in `grpc-status-details-bin`), so a
client switches on the reason and the field rather than parse the text.

Needs the grpcio-status package (pip install grpcio-status).
"""

from google.rpc import error_details_pb2
from grpc_status import rpc_status


def describe(error):
    """Lines saying why `error` (a grpc.RpcError) was refused: its code and text, then each detail."""
    lines = [f"refused: {error.code().name} {error.details()}"]
    status = rpc_status.from_call(error)
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            lines.append(f"  reason {info.reason} ({info.domain}) {dict(sorted(info.metadata.items()))}")
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            lines += [f"  field {v.field}: {v.description}" for v in bad.field_violations]
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            lines.append(f"  retry in {retry.retry_delay.ToTimedelta().total_seconds():.3f} s")
        elif detail.Is(error_details_pb2.ResourceInfo.DESCRIPTOR):
            resource = error_details_pb2.ResourceInfo()
            detail.Unpack(resource)
            lines.append(f"  {resource.resource_type} {resource.resource_name!r}")
    return lines
