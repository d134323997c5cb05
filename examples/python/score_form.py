"""Scores a lead from a web form with `ScoringService.Score` and prints why it scores so.

Usage: python score_form.py [--server HOST:PORT] [--token T] [--campaign C]
                            [--attr NAME=VALUE ...] [--event KIND ...]
e.g.   python score_form.py --attr role=CTO --attr employees=640 --event page_view:/pricing
"""

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "generated"))

import grpc  # noqa: E402
from leadscore.v1 import lead_pb2, scoring_pb2, scoring_pb2_grpc  # noqa: E402
from refusals import describe  # noqa: E402


def form_lead(attributes, events):
    lead = lead_pb2.Lead(id=f"form-{int(time.time() * 1000)}")
    for pair in attributes:
        name, _, value = pair.partition("=")
        try:
            lead.attributes[name].number = float(value)
        except ValueError:
            lead.attributes[name].text = value
    recorded = [lead_pb2.Event(id=f"e{i}", lead_id=lead.id, kind=kind) for i, kind in enumerate(events)]
    return lead, recorded


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=os.environ.get("LEADSCORE_SERVER", "127.0.0.1:50051"))
    parser.add_argument("--token", default=os.environ.get("LEADSCORE_TOKEN", ""))
    parser.add_argument("--campaign", default="")
    parser.add_argument("--attr", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--event", action="append", default=[], metavar="KIND")
    args = parser.parse_args()

    lead, events = form_lead(args.attr, args.event)
    scoring = scoring_pb2_grpc.ScoringServiceStub(grpc.insecure_channel(args.server))
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []
    request = scoring_pb2.ScoreRequest(lead=lead, events=events, campaign=args.campaign, explain=True)
    try:
        score = scoring.Score(request, metadata=metadata, timeout=5).score
    except grpc.RpcError as error:
        print("\n".join(describe(error)), file=sys.stderr)
        sys.exit(1)

    print(f"score {score.score:.1f}  band {scoring_pb2.Band.Name(score.band)}  grade {score.grade}")
    for part in score.scorers:
        print(f"  {part.scorer:<12} {part.contribution:+7.1f}  (score {part.score:.1f}, weight {part.weight:g})")
        for factor in part.top_factors:
            print(f"      {factor.contribution:+6.1f}  {factor.detail or factor.feature}")


if __name__ == "__main__":
    main()
