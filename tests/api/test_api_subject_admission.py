"""New subjects are budgeted per client and capped per node (review H3, ADR 0027).

Before, a subject cost its creator nothing: one client within the event budget (1,000 events/s)
could add ~22 GB of RSS per hour to every node. Now a client may create ``api.new_subjects_per_s``
subjects (burst ``api.new_subjects_burst``), and a node holds at most ``limits.max_subjects``.
"""

from __future__ import annotations

from dataclasses import replace

from api_support import NOW, Clock, Subject, TestClient, make_api, obj

from keyreg.api.app import ApiContext, create_app
from keyreg.config import ApiConfig, Config
from keyreg.core.limits import Limits
from keyreg.keys.service_keys import ServiceKey
from keyreg.registry import Registry
from keyreg.store.memory import MemoryStore


def test_a_client_creating_subjects_past_its_budget_gets_429_and_the_node_stays_bounded() -> None:
    client, registry, _, config = make_api(new_subjects_per_s=0.001, new_subjects_burst=10)
    subjects = [Subject.make(config) for _ in range(25)]
    statuses = [client.post("/v1/events", json=obj(s.inception)).status_code for s in subjects[:15]]
    assert statuses == [200] * 10 + [429] * 5
    batch = client.post("/v1/events", json={"events": [obj(s.inception) for s in subjects[15:]]})
    assert batch.status_code == 429
    assert batch.json()["code"] == "rate_limited"
    assert int(batch.headers["retry-after"]) >= 1
    assert len(registry.states) == 10  # refused before any recovery or storage
    # Events of subjects the client already made are within the event budget, not this one.
    key = ServiceKey.generate("P-256", "k2")
    update = subjects[0].next_update(NOW + 1, publish=[key.published(("sig",), NOW + 1)])
    assert client.post("/v1/events", json=obj(update)).status_code == 200


def test_a_node_at_limits_max_subjects_refuses_new_subjects_with_capacity_and_warns() -> None:
    config = replace(Config(), limits=Limits(max_subjects=4), api=replace(ApiConfig(), rate_limit_per_s=0))
    registry = Registry(config.domain, MemoryStore(), config.limits, clock=Clock())
    client = TestClient(create_app(ApiContext(registry, config)), client=("127.0.0.1", 5000))
    subjects = [Subject.make(config) for _ in range(6)]
    answers = [client.post("/v1/events", json=obj(s.inception)) for s in subjects]
    assert [a.status_code for a in answers] == [200] * 4 + [503] * 2
    assert {a.json()["code"] for a in answers[4:]} == {"capacity"}
    assert len(registry.states) == 4
    health = client.get("/v1/health").json()
    assert health["capacity"]["maxSubjects"] == 4
    assert "full" in health["capacity"]["warning"]
