"""Times TopAccounts, TopLeads, the first WatchTopLeads message and Route through one address,
one call at a time: a single node's, or a cluster node's (examples/cluster/up.sh).

Usage: target/pyenv/bin/python bench/cluster_calls.py ADDRESS seed   (20,000 leads over 2,000
       accounts and 50 available agents)
       target/pyenv/bin/python bench/cluster_calls.py ADDRESS time
(the stubs under target/pyenv/stubs are made by the test suite's first run)
"""
import os, sys, time, statistics, grpc
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "target", "pyenv", "stubs"))
from leadscore.v1 import scoring_pb2, scoring_pb2_grpc, routing_pb2, routing_pb2_grpc, lead_pb2, lead_pb2_grpc
address, mode = sys.argv[1], sys.argv[2]
ch = grpc.insecure_channel(address)
scoring = scoring_pb2_grpc.ScoringServiceStub(ch)
routing = routing_pb2_grpc.RoutingServiceStub(ch)
leads = lead_pb2_grpc.LeadServiceStub(ch)
if mode == "seed":
    roles = ["CTO", "VP Sales", "Engineer", "Intern"]
    for b in range(20):
        batch = []
        for i in range(b * 1000, (b + 1) * 1000):
            attrs = {"role": lead_pb2.AttributeValue(text=roles[i % 4]),
                     "employees": lead_pb2.AttributeValue(number=[5, 60, 640, 5000][i // 4 % 4]),
                     "account": lead_pb2.AttributeValue(text=f"company-{i % 2000}.com")}
            batch.append(lead_pb2.Lead(id=f"lead-{i:05}", attributes=attrs))
        leads.UpsertLeads(lead_pb2.UpsertLeadsRequest(leads=batch))
    routing.UpsertAgents(routing_pb2.UpsertAgentsRequest(agents=[routing_pb2.Agent(id=f"agent-{a}", name=f"a{a}", capacity=3, skills=routing_pb2.AgentSkills(tier=2)) for a in range(50)]))
    for a in range(50):
        routing.SetAgentState(routing_pb2.SetAgentStateRequest(agent_id=f"agent-{a}", state=routing_pb2.AGENT_STATE_AVAILABLE))
    sys.exit(0)
def timed(name, call, n):
    call()
    t = []
    for _ in range(n):
        s = time.perf_counter(); call(); t.append((time.perf_counter() - s) * 1e6)
    t.sort()
    print(f"{name}: p50 {statistics.median(t):.0f} µs, p90 {t[int(len(t)*0.9)]:.0f} µs ({n} calls)")
timed("TopAccounts 100", lambda: list(scoring.TopAccounts(scoring_pb2.TopAccountsRequest(limit=100))), 100)
timed("TopLeads 100", lambda: list(scoring.TopLeads(scoring_pb2.TopLeadsRequest(limit=100))), 100)
def first_watch():
    stream = scoring.WatchTopLeads(scoring_pb2.TopLeadsRequest(limit=100))
    next(stream); stream.cancel()
timed("WatchTopLeads 100, first message", first_watch, 50)
timed("Route", lambda: routing.Route(routing_pb2.RouteRequest(lead_id="lead-00123")), 200)
