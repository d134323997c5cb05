"""Opens every page of the web console in headless Chromium and checks what it shows against
the server's gRPC answers; then watches a live panel update as a lead crosses a band.

Usage: check_console.py CONSOLE_URL GRPC_ADDRESS SCREENSHOT_DIR MODE [ARGS]   (stubs on PYTHONPATH)
MODE: empty (a server with nothing), full ROUTED_LEAD CROSSING_LEAD (a seeded one), or
token TOKEN (a server that checks tokens).
"""

import math
import sys
import time
from pathlib import Path

import grpc
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as seen
from selenium.webdriver.support.ui import Select, WebDriverWait

from leadscore.v1 import admin_pb2, admin_pb2_grpc, dialer_pb2, dialer_pb2_grpc, lead_pb2, lead_pb2_grpc
from leadscore.v1 import routing_pb2, routing_pb2_grpc, scoring_pb2, scoring_pb2_grpc

console, address, shots = sys.argv[1], sys.argv[2], Path(sys.argv[3])
shots.mkdir(parents=True, exist_ok=True)
channel = grpc.insecure_channel(address)
scoring = scoring_pb2_grpc.ScoringServiceStub(channel)
admin = admin_pb2_grpc.AdminServiceStub(channel)
dialer = dialer_pb2_grpc.DialerServiceStub(channel)
routing = routing_pb2_grpc.RoutingServiceStub(channel)
leads = lead_pb2_grpc.LeadServiceStub(channel)
BAND = scoring_pb2.Band.Name

options = webdriver.ChromeOptions()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"]:
    options.add_argument(flag)
# The browser's console, read after each page: the server's Content-Security-Policy must block
# nothing the console itself does.
options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
browser = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
wait = WebDriverWait(browser, 20, ignored_exceptions=(StaleElementReferenceException,))


def number(text):
    return float(text.replace(",", "").replace("×", "").replace("%", ""))


def points(score):
    """A score as the console shows it: one decimal, cut rather than rounded."""
    return math.floor(score * 10 + 1e-9) / 10


def signed(points):
    rounded = math.floor(abs(points) + 0.5)
    return f"{'-' if points < 0 else '+'}{rounded}"


def why(score):
    """A lead's three largest factors in plain words, as the top leads list shows them."""
    factors = sorted((f for s in score.scorers for f in s.top_factors), key=lambda f: -abs(f.contribution))[:3]
    return " · ".join(f"{f.detail or f.feature} {signed(f.contribution)}" for f in factors)


def display_name(card):
    return next((d.value for d in card.display if d.value), None)


def open_page(page):
    browser.get(f"{console}/#{page}")
    browser.refresh()
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == page)
    error = browser.find_element(By.ID, "error")
    assert not error.is_displayed(), f"{page}: {error.text}"
    blocked = [entry["message"] for entry in browser.get_log("browser") if "Content Security Policy" in entry["message"]]
    assert not blocked, f"{page}: the security policy blocked {blocked}"


def shot(page):
    time.sleep(0.5)  # charts draw on the next frame
    browser.save_screenshot(str(shots / f"{page}.png"))


def table(table_id, attribute):
    """A table's rows read at one instant (a live page redraws them): each row's
    `data-<attribute>` and the text of its cells."""
    script = """
        const [id, name] = arguments;
        return [...document.querySelectorAll(`#${id} tbody tr`)]
            .map((row) => [row.getAttribute(name), [...row.querySelectorAll("td")].map((cell) => cell.innerText)]);
    """
    return browser.execute_script(script, table_id, f"data-{attribute}")


def keys(table_id, attribute):
    return [key for key, _ in table(table_id, attribute)]


def check_scores():
    open_page("scores")
    d = scoring.ScoreDistribution(scoring_pb2.ScoreDistributionRequest())
    assert d.leads > 0
    assert number(browser.find_element(By.ID, "scores-total").text) == d.leads
    for band in d.bands:
        shown = browser.find_element(By.CSS_SELECTOR, f'[data-band-count="{BAND(band.band)}"] .value').text
        assert number(shown) == band.leads, (BAND(band.band), shown, band.leads)
    cells = browser.execute_script(
        "return [...document.querySelectorAll('#grades td[data-grade]')].map((c) => [c.dataset.grade, c.innerText])")
    shown = {grade: number(text) for grade, text in cells if text}
    assert shown == {g.grade: g.leads for g in d.grades}, (shown, d.grades)
    assert browser.find_element(By.ID, "histogram").size["height"] > 100
    # Leads without any points apart; new hot leads of the last day and week.
    assert d.without_points > 0
    assert number(browser.find_element(By.ID, "scores-zero").text) == d.without_points
    assert browser.find_element(By.ID, "scores-new-hot").text == f"{d.new_hot_last_day:,} · {d.new_hot_last_week:,}"
    assert (d.thresholds.warm, d.thresholds.sales_ready, d.thresholds.hot) == (25, 50, 75), d.thresholds
    shot("scores")
    # A band's tile opens the top leads of that band.
    browser.find_element(By.CSS_SELECTOR, '[data-band-count="BAND_WARM"]').click()
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "top")
    warm = list(scoring.TopLeads(scoring_pb2.TopLeadsRequest(limit=50, bands=[scoring_pb2.BAND_WARM], exclude_finished=True)))
    wait.until(lambda b: keys("top-leads", "lead") == [t.score.lead_id for t in warm])
    browser.find_element(By.CSS_SELECTOR, '#top-filters select[name="band"] option[value=""]').click()
    print(f"scores: {d.leads} leads, bands {[b.leads for b in d.bands]}, {len(d.grades)} grades")


def check_top():
    open_page("top")
    # Finished leads (converted, lost, ...) are hidden unless asked for.
    top = list(scoring.TopLeads(scoring_pb2.TopLeadsRequest(limit=50, explain=True, exclude_finished=True)))
    shown = table("top-leads", "lead")
    assert [lead for lead, _ in shown] == [t.score.lead_id for t in top]
    named = 0
    for (_, cells), ranked in zip(shown, top):
        # Who the lead is: its first display attribute over its id.
        name = display_name(ranked.card)
        assert cells[1].startswith(name or ranked.score.lead_id) and ranked.score.lead_id in cells[1], (cells, ranked.card)
        named += name is not None
        assert number(cells[2]) == points(ranked.score.score), (cells, ranked.score.score)
        assert cells[4] == ranked.score.grade
        assert cells[5] == why(ranked.score), (cells[5], why(ranked.score))
        assert "decayed" not in cells[5]
        dialing = ranked.dialing
        calls = f"{dialing.attempts} · {dialing.last_outcome.replace('_', ' ')}" if dialing.attempts else "none"
        assert cells[6].startswith(calls), (cells, dialing)
        assert cells[7].startswith("now" if dialing.callable_now else "never" if not dialing.HasField("next_callable_at") else "in "), (cells, dialing)

    # The list is live: a lead that becomes the best joins it at the top, and leaves it when
    # erased, with no reload.
    live = lead_pb2.Lead(id="console-live", phone="+16465550177", time_zone="America/New_York")
    live.attributes["role"].text = "CTO"
    live.attributes["department"].text = "IT"
    live.attributes["employees"].number = 900
    leads.UpsertLeads(lead_pb2.UpsertLeadsRequest(leads=[live]))
    hot = [lead_pb2.Event(id=f"live-{n}", lead_id="console-live", kind=kind)
           for n, kind in enumerate(["demo_request", "page_view:/pricing", "demo_request", "webinar_attended"] * 3)]
    leads.RecordEvents(lead_pb2.RecordEventsRequest(events=hot))
    best = next(iter(scoring.TopLeads(scoring_pb2.TopLeadsRequest(limit=1, exclude_finished=True)))).score.lead_id
    assert best == "console-live", best
    wait.until(lambda b: keys("top-leads", "lead")[:1] == ["console-live"])
    leads.EraseLead(lead_pb2.EraseLeadRequest(id="console-live"))
    wait.until(lambda b: "console-live" not in keys("top-leads", "lead"))
    assert keys("top-leads", "lead") == [t.score.lead_id for t in top]
    assert named > 0, "the seeded leads have names"

    # Search reaches display attributes: a company name finds its leads.
    company = next(d.value for t in top for d in t.card.display if d.name == "company")
    search = browser.find_element(By.ID, "top-search")
    search.send_keys(company)
    expected = [t.score.lead_id for t in top if any(d.value == company for d in t.card.display)]
    wait.until(lambda b: keys("top-leads", "lead") == expected)
    search.send_keys(Keys.CONTROL + "a", Keys.DELETE)
    wait.until(lambda b: keys("top-leads", "lead") == [t.score.lead_id for t in top])
    # Enter searches every lead through the server, not only the rows loaded: the lowest
    # ranked named lead, far below the 25 shown.
    Select(browser.find_element(By.CSS_SELECTOR, '#top-filters select[name="limit"]')).select_by_visible_text("25")
    browser.find_element(By.CSS_SELECTOR, '#top-filters button[type="submit"]').click()
    everyone = list(scoring.TopLeads(scoring_pb2.TopLeadsRequest(limit=10000, exclude_finished=True)))
    wait.until(lambda b: keys("top-leads", "lead") == [t.score.lead_id for t in everyone[:25]])
    far = next(display_name(t.card) for t in reversed(everyone) if display_name(t.card))
    assert far not in [display_name(t.card) for t in everyone[:25]]
    search.send_keys(far.upper(), Keys.ENTER)
    found = list(scoring.TopLeads(scoring_pb2.TopLeadsRequest(limit=25, exclude_finished=True, search=far.upper())))
    assert found and all(far.lower() in " ".join(d.value for d in t.card.display).lower() for t in found), found
    wait.until(lambda b: keys("top-leads", "lead") == [t.score.lead_id for t in found])
    search.send_keys(Keys.CONTROL + "a", Keys.DELETE)
    Select(browser.find_element(By.CSS_SELECTOR, '#top-filters select[name="limit"]')).select_by_visible_text("50")
    browser.find_element(By.CSS_SELECTOR, '#top-filters button[type="submit"]').click()
    wait.until(lambda b: keys("top-leads", "lead") == [t.score.lead_id for t in top])

    # Who to call first: only the leads an agent could claim now.
    browser.find_element(By.CSS_SELECTOR, '#top-filters input[name="callable_now"]').click()
    browser.find_element(By.CSS_SELECTOR, '#top-filters button[type="submit"]').click()
    callable_now = list(scoring.TopLeads(scoring_pb2.TopLeadsRequest(limit=50, callable_now=True, exclude_finished=True)))
    # The seeded calls left leads recycling, so the lists differ.
    assert [t.score.lead_id for t in callable_now] != [t.score.lead_id for t in top]
    wait.until(lambda b: keys("top-leads", "lead") == [t.score.lead_id for t in callable_now])
    browser.find_element(By.CSS_SELECTOR, '#top-filters input[name="callable_now"]').click()
    accounts = list(scoring.TopAccounts(scoring_pb2.TopAccountsRequest(limit=20)))
    assert keys("top-accounts", "account") == [a.account.account for a in accounts]

    # Filtered to a band.
    browser.find_element(By.CSS_SELECTOR, '#top-filters select[name="band"] option[value="BAND_WARM"]').click()
    browser.find_element(By.CSS_SELECTOR, '#top-filters button[type="submit"]').click()
    warm = list(scoring.TopLeads(scoring_pb2.TopLeadsRequest(limit=50, bands=[scoring_pb2.BAND_WARM], exclude_finished=True)))
    wait.until(lambda b: keys("top-leads", "lead") == [t.score.lead_id for t in warm])

    # A number attribute filters by a range, or by a number typed as text.
    attribute = browser.find_element(By.CSS_SELECTOR, '#top-filters input[name="attribute"]')
    value = browser.find_element(By.CSS_SELECTOR, '#top-filters input[name="equals"]')
    attribute.send_keys("employees")
    for typed, wanted in [("100-999", scoring_pb2.NumericRange(min=100, max=999)), ("640", None)]:
        value.clear()
        value.send_keys(typed)
        browser.find_element(By.CSS_SELECTOR, '#top-filters button[type="submit"]').click()
        match = {"range": wanted} if wanted else {"equals": lead_pb2.AttributeValue(text=typed)}
        asked = scoring_pb2.TopLeadsRequest(limit=50, bands=[scoring_pb2.BAND_WARM], exclude_finished=True,
                                            filters=[scoring_pb2.AttributeFilter(attribute="employees", **match)])
        expected = [t.score.lead_id for t in scoring.TopLeads(asked)]
        assert expected and len(expected) < len(warm), (typed, expected)
        wait.until(lambda b: keys("top-leads", "lead") == expected)
    for box in (attribute, value):
        box.clear()
    browser.find_element(By.CSS_SELECTOR, '#top-filters button[type="submit"]').click()
    wait.until(lambda b: keys("top-leads", "lead") == [t.score.lead_id for t in warm])

    # A lead's explanation and history.
    lead_id = keys("top-leads", "lead")[0]
    browser.find_element(By.CSS_SELECTOR, f'#top-leads tr[data-lead="{lead_id}"]').click()
    wait.until(seen.visibility_of_element_located((By.ID, "lead-detail")))
    wait.until(lambda b: lead_id in b.find_element(By.ID, "detail-title").text)
    explained = scoring.Explain(scoring_pb2.ExplainRequest(lead_id=lead_id)).score
    factors = [f for s in explained.scorers for f in s.top_factors]
    wait.until(lambda b: len(table("factors", "x")) == len(factors))
    assert f"Score {points(explained.score):.1f}" in browser.find_element(By.ID, "detail-summary").text
    # Who the lead is, how to reach it, and its whole profile.
    stored = leads.GetLead(lead_pb2.GetLeadRequest(id=lead_id)).lead
    assert f"phone {stored.phone}" in browser.find_element(By.ID, "detail-contact").text
    profile = browser.execute_script("return [...document.querySelectorAll('#profile tr')].map((r) => r.dataset.attribute)")
    assert sorted(profile) == sorted(stored.attributes), (profile, list(stored.attributes))
    assert browser.find_element(By.ID, "waterfall").size["height"] > 100
    history = scoring.ScoreHistory(scoring_pb2.ScoreHistoryRequest(lead_id=lead_id, campaign="default")).changes
    assert browser.find_element(By.ID, "history-empty").is_displayed() == (len(history) == 0)
    shot("top")
    print(f"top: {len(top)} leads, {len(accounts)} accounts, {lead_id} explained by {len(factors)} factors")


def check_alerts(crossing_lead):
    open_page("alerts")
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "scores")
    before = scoring.Explain(scoring_pb2.ExplainRequest(lead_id=crossing_lead)).score.band
    profile = {"role": "CTO", "employees": 640.0, "industry": "Software", "name": "Grace Hopper"}
    lead = lead_pb2.Lead(id=crossing_lead, phone="+16465550100", time_zone="America/New_York")
    for name, value in profile.items():
        if isinstance(value, str):
            lead.attributes[name].text = value
        else:
            lead.attributes[name].number = value
    leads.UpsertLeads(lead_pb2.UpsertLeadsRequest(leads=[lead]))
    after = scoring.Explain(scoring_pb2.ExplainRequest(lead_id=crossing_lead)).score.band
    assert after != before, "the upsert was meant to move the lead across a band"
    # The page opened with the latest crossings (the lead's creation among them); the newest,
    # on top, is the live one.
    def newest(b):
        row = b.find_element(By.CSS_SELECTOR, f'#alerts tr[data-lead="{crossing_lead}"]')
        return row if row.find_elements(By.CSS_SELECTOR, ".band-pill")[1].get_attribute("data-band") == BAND(after) else None

    row = wait.until(newest)
    assert browser.find_element(By.ID, "alerts-count").text == str(len(table("alerts", "lead")))
    assert "Grace Hopper" in row.text, row.text
    shot("alerts")
    # A reload keeps them: the server sends its latest crossings first.
    shown = keys("alerts", "lead")
    open_page("alerts")
    wait.until(lambda b: keys("alerts", "lead") == shown)
    row = newest(browser)
    assert row is not None and "Grace Hopper" in row.text
    # An alert opens its lead.
    row.click()
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "top")
    wait.until(lambda b: crossing_lead in b.find_element(By.ID, "detail-title").text)
    print(f"alerts: {crossing_lead} crossed {BAND(before)} -> {BAND(after)} live")


def check_wallboard():
    open_page("wallboard")
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "wallboard")
    wait.until(lambda b: b.find_element(By.ID, "wb-queued").text != "")
    board = dialer.Wallboard(dialer_pb2.WallboardRequest())
    assert number(browser.find_element(By.ID, "wb-queued").text) == board.queued
    # Callable means callable by an agent: leads routing sends to nurture are shown apart.
    assert board.to_no_agent > 0, board
    assert number(browser.find_element(By.ID, "wb-callable").text) == board.callable - board.to_no_agent
    assert browser.find_element(By.ID, "wb-no-agent").text == f"+{board.to_no_agent:,} routed to no agent"
    talk_ms, talked = sum(m.talk_ms for m in board.minutes), sum(m.talked for m in board.minutes)
    assert talked > 0
    seconds = round(talk_ms / talked / 1000)
    assert browser.find_element(By.ID, "wb-talk").text == f"{seconds // 60}:{seconds % 60:02d}"
    assert number(browser.find_element(By.ID, "wb-callbacks").text) == board.callbacks_due
    assert number(browser.find_element(By.ID, "wb-claims").text) == sum(m.claims for m in board.minutes)
    converted = sum(m.outcomes[dialer_pb2.CALL_RESULT_CONVERTED - 1] for m in board.minutes)
    assert number(browser.find_element(By.ID, "wb-conversions").text) == converted
    agents = dict(table("agents", "agent"))
    assert set(agents) == {a.agent_id for a in board.agents}
    for a in board.agents:
        row = agents[a.agent_id]
        assert [number(c) for c in row[3:6]] == [a.leases, a.decided, a.converted], (row, a)
        # Its state, and for how long: the seed set every agent available moments ago.
        assert row[1] == routing_pb2.AgentState.Name(a.state).removeprefix("AGENT_STATE_").lower(), row
        assert row[2].endswith(" min"), row
    summary = browser.find_element(By.ID, "agents-summary").text
    assert summary == f"{len(board.agents)} available", summary
    # Each routing queue's waiting leads and longest wait: the seed's cold leads wait in nurture.
    queues = dict(table("routing-queues", "queue"))
    assert {q: number(cells[1]) for q, cells in queues.items()} == {q.queue: q.waiting for q in board.routing_queues}
    assert queues["nurture"][2].endswith(" min"), queues
    zones = dict(table("zones", "zone"))
    assert len(zones) == len(board.zones)
    for z in board.zones:
        shown = zones[z.time_zone + (f"/{z.region}" if z.region else "")]
        # A shut window's leads wait for it: "(3 waiting)".
        callable_shown = shown[2] if z.open else shown[2].removeprefix("(").removesuffix(" waiting)")
        assert number(callable_shown) == z.callable - z.to_no_agent and shown[3] == ("open" if z.open else "shut"), (shown, z)
        assert " local)" in shown[4], shown
    # Abandoned calls against the 3% limit: the seeded calls abandoned 3 of 9 answered.
    a = board.abandonment
    assert (a.answered, a.abandoned, a.over_limit) == (9, 3, True), a
    tile = browser.find_element(By.ID, "wb-abandoned")
    assert tile.text == f"{a.rate * 100:.1f}%", tile.text
    assert "over" in tile.find_element(By.XPATH, "..").get_attribute("class")
    shot("wallboard")
    print(f"wallboard: {board.queued} queued, {board.callable} callable, {len(board.agents)} agents, {len(board.zones)} zones")


def check_routing(routed_lead):
    open_page("routing")
    arms = [a for a in admin.Stats(admin_pb2.StatsRequest()).routing_arms if a.arm]
    assert sum(a.decisions for a in arms) > 0, "the test routed leads with the A/B check on"
    shown = dict(table("arm-table", "arm"))
    for arm in arms:
        row = shown[routing_pb2.RoutingArm.Name(arm.arm)]
        assert [number(c) for c in row[1:4]] == [arm.decisions, arm.decided_calls, arm.conversions], (row, arm)
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-live") == "routing")
    decision = routing.Route(routing_pb2.RouteRequest(lead_id=routed_lead)).decision
    row = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, f'#decisions tr[data-decision="{decision.decision_id}"]'))
    assert display_name(decision.card) and display_name(decision.card) in row.text, (row.text, decision.card)
    target = f"agent {decision.target.agent_id}" if decision.target.agent_id else f"queue {decision.target.queue}"
    assert f"{target} 1" in browser.find_element(By.ID, "decision-tally").text
    # The A/B figures follow the decisions without a reload.
    arms = [a for a in admin.Stats(admin_pb2.StatsRequest()).routing_arms if a.arm]
    decisions = {routing_pb2.RoutingArm.Name(a.arm): a.decisions for a in arms}
    wait.until(lambda b: {arm: number(cells[1]) for arm, cells in table("arm-table", "arm")} == decisions)
    shot("routing")
    print(f"routing: {len(arms)} arms; decision {decision.decision_id} streamed")


def check_scorers():
    open_page("scorers")
    listed = admin.ListScorers(admin_pb2.ListScorersRequest()).scorers
    shown = dict(table("scorers", "scorer"))
    assert set(shown) == {s.name or s.path for s in listed}
    for s in listed:
        row = shown[s.name or s.path]
        assert row[2] == admin_pb2.ScorerStatus.Name(s.status).replace("SCORER_STATUS_", "").lower()
        assert number(row[4]) == s.faults
        if s.name:
            assert s.ns_per_lead > 0 and number(row[5]) > 0, (row, s.ns_per_lead)
    shot("scorers")
    print(f"scorers: {[s.name for s in listed]}")


def check_validation():
    open_page("validation")
    report = admin.ValidationReport(admin_pb2.ValidationReportRequest())
    assert report.sections, "the test made calls with outcomes"
    sections = browser.find_elements(By.CSS_SELECTOR, "[data-section]")
    assert len(sections) == len(report.sections)
    for i, s in enumerate(report.sections):
        assert number(browser.find_element(By.CSS_SELECTOR, f"#leads-{i} .value").text) == s.all.leads
        if s.HasField("roc_auc"):
            assert browser.find_element(By.CSS_SELECTOR, f"#auc-{i} .value").text.startswith(f"{s.roc_auc:.3f} ±")
        # Each bar says how many calls it stands on; a band without calls says so rather than 0%.
        calls = lambda b: f"{b.conversions}/{b.leads}" if b.leads else "no calls"
        shown = browser.find_element(By.ID, f"bands-{i}").get_attribute("data-counts")
        assert shown == " ".join(calls(b.bucket) for b in s.bands), shown
        # A handful of calls: the page warns that AUC and lift mean little yet.
        assert s.all.leads < 100 and "first hint" in browser.find_element(By.ID, f"sample-{i}").text
    shot("validation")
    print(f"validation: {len(report.sections)} sections, {report.sections[0].all.leads} called leads")


def check_phone():
    """On a 390×844 phone: the menu folds behind a button, and no page scrolls sideways."""
    browser.set_window_size(390, 844)
    width = browser.execute_script("return window.innerWidth")
    assert width <= 400, f"the window is {width} px wide"
    for page in ["scores", "top", "alerts", "wallboard", "routing", "scorers", "validation"]:
        open_page(page)
        assert not browser.find_element(By.ID, "nav").is_displayed(), f"{page}: the menu is open"
        if page == "top":
            browser.find_element(By.CSS_SELECTOR, "#top-leads tbody tr[data-lead]").click()
            wait.until(seen.visibility_of_element_located((By.ID, "lead-detail")))
        time.sleep(0.5)
        wide = browser.execute_script("return document.documentElement.scrollWidth")
        assert wide <= width, f"{page} is {wide} px wide on a {width} px screen"
        shot(f"phone-{page}")
    browser.find_element(By.ID, "menu-button").click()
    wait.until(lambda b: b.find_element(By.ID, "nav").is_displayed())
    browser.find_element(By.CSS_SELECTOR, '#nav a[data-page="wallboard"]').click()
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "wallboard")
    assert not browser.find_element(By.ID, "nav").is_displayed(), "the menu folds once a page is chosen"
    print(f"phone: no page wider than {width} px; the menu folds")


def check_empty():
    """On a server with no leads and no calls, each page says what to do next."""
    expected = {"scores": "No leads yet", "top": "No leads yet", "wallboard": "no agent is registered",
                "validation": "No call with an outcome yet"}
    for page, words in expected.items():
        open_page(page)
        message = wait.until(lambda b: b.find_element(By.CSS_SELECTOR, f"#page-{page} [data-empty]"))
        wait.until(lambda b: message.is_displayed())
        assert words in message.text, message.text
        for panel in browser.find_elements(By.CSS_SELECTOR, f"#page-{page} [data-full]"):
            assert not panel.is_displayed(), f"{page} draws empty panels"
        shot(f"empty-{page}")
    print(f"empty: {', '.join(expected)} say what to do next")


def check_token(token):
    """On a server that checks tokens, the console asks for one, then serves with it."""
    browser.get(f"{console}/#scores")
    dialog = wait.until(lambda b: b.find_element(By.ID, "token-dialog"))
    wait.until(lambda b: dialog.is_displayed())
    assert "wants a token" in browser.find_element(By.ID, "error").text
    shot("token")
    browser.find_element(By.ID, "token-input").send_keys(token + Keys.ENTER)
    wait.until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") == "scores")
    assert not browser.find_element(By.ID, "error").is_displayed()
    message = browser.find_element(By.CSS_SELECTOR, "#page-scores [data-empty]")
    assert "No leads yet" in message.text, message.text
    print("token: asked for, then served with it")


if __name__ == "__main__":
    try:
        mode = sys.argv[4] if len(sys.argv) > 4 else "full"
        if mode == "empty":
            check_empty()
        elif mode == "token":
            check_token(sys.argv[5])
        else:
            check_scores()
            check_top()
            check_wallboard()
            check_scorers()
            check_validation()
            check_routing(sys.argv[5])
            check_alerts(sys.argv[6])
            check_phone()
    except Exception:
        browser.save_screenshot(str(shots / "failure.png"))
        raise
    finally:
        browser.quit()
