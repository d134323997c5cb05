"""A predictive dialer's hopper on `DialerService.DialerSession`: keeps `--lines` claims in
hand, "dials" each (simulated: a short wait, and a result drawn with the lead's score as its
odds), reports the outcome, and asks for one more lead per call made.

Usage: python dialer.py [--server HOST:PORT] [--token T] [--campaign C] [--agent A]
                        [--lines N] [--calls N] [--seed S]
Prints one line per call and a summary; exits non-zero if the server refused anything.
"""

import argparse
import os
import queue
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "generated"))

import grpc  # noqa: E402
from leadscore.v1 import dialer_pb2, dialer_pb2_grpc  # noqa: E402
from refusals import describe  # noqa: E402

# How long the hopper waits for a lead when the server says none is eligible.
STARVED_WAIT_S = 5.0


def dial(claim, rng):
    """A simulated call: the better the score, the likelier a sale."""
    time.sleep(rng.uniform(0.001, 0.01))
    chance = min(claim.score.score, 100.0) / 200.0
    roll = rng.random()
    if roll < chance:
        return dialer_pb2.CALL_RESULT_CONVERTED
    if roll < chance + 0.3:
        return dialer_pb2.CALL_RESULT_NO_ANSWER
    if roll < chance + 0.4:
        return dialer_pb2.CALL_RESULT_VOICEMAIL
    return dialer_pb2.CALL_RESULT_CONNECTED_NOT_INTERESTED


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("LEADSCORE_SERVER", "127.0.0.1:50051"))
    parser.add_argument("--token", default=os.environ.get("LEADSCORE_TOKEN", ""))
    parser.add_argument("--campaign", default="")
    parser.add_argument("--agent", default="python-dialer")
    parser.add_argument("--lines", type=int, default=4, help="claims kept in hand")
    parser.add_argument("--calls", type=int, default=20, help="calls to make before stopping")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    outbox = queue.Queue()
    outbox.put(dialer_pb2.DialerRequest(hello=dialer_pb2.DialerHello(campaign=args.campaign, agent_id=args.agent)))
    outbox.put(dialer_pb2.DialerRequest(credits=args.lines))

    def requests():
        while (message := outbox.get()) is not None:
            yield message

    dialer = dialer_pb2_grpc.DialerServiceStub(grpc.insecure_channel(args.server))
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    session = dialer.DialerSession(requests(), metadata=metadata)
    made, acknowledged, refused, results = 0, 0, 0, {}
    deadline = None
    try:
        for response in session:
            kind = response.WhichOneof("message")
            if kind == "claim" and made < args.calls:
                claim = response.claim
                result = dial(claim, rng)
                made += 1
                name = dialer_pb2.CallResult.Name(result).removeprefix("CALL_RESULT_").lower()
                results[name] = results.get(name, 0) + 1
                print(f"call {made:>3}: {claim.lease.lead_id:<16} score {claim.score.score:6.1f}  -> {name}")
                outcome = dialer_pb2.Outcome(lease_id=claim.lease.lease_id, result=result)
                outbox.put(dialer_pb2.DialerRequest(outcome=outcome))
                if made < args.calls:
                    outbox.put(dialer_pb2.DialerRequest(credits=1))
            elif kind == "claim":
                # More than we asked to call: hand it back.
                outbox.put(dialer_pb2.DialerRequest(release_lease_id=response.claim.lease.lease_id))
            elif kind == "revoked":
                # The lead must not be called now (do-not-call, consent withdrawn, an objection, an
                # erasure, its window closed): the server ended the lease; a hopper that holds
                # claims before dialling drops it. This one dials at once, so none is held.
                reason = dialer_pb2.RevokeReason.Name(response.revoked.reason).removeprefix("REVOKE_REASON_")
                print(f"revoked: {response.revoked.lead_id} ({reason.lower()})", file=sys.stderr)
            elif kind == "outcome_ack":
                acknowledged += 1
            elif kind == "rejected":
                refused += 1
                print(f"refused ({response.rejected.reason}): {response.rejected.message}", file=sys.stderr)
            elif kind == "starved":
                deadline = deadline or time.monotonic() + STARVED_WAIT_S
                if time.monotonic() > deadline:
                    print("no lead is eligible now; stopping", file=sys.stderr)
                    break
            if made >= args.calls and acknowledged >= made:
                break
    except grpc.RpcError as error:
        # The session itself was refused (a bad hello, a token without the dialer role).
        print("\n".join(describe(error)), file=sys.stderr)
        outbox.put(None)
        sys.exit(1)
    outbox.put(None)
    session.cancel()
    print(f"{made} calls, {acknowledged} outcomes acknowledged, {refused} refused: {results}")
    sys.exit(1 if refused or acknowledged < made else 0)


if __name__ == "__main__":
    main()
