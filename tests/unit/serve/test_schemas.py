"""What a client is told about the request bodies: one clear message per mistake, and that
``/v1/moderations`` judges images only (in its OpenAPI description)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from safeclip_guardrail import SafeCLIPGuard
from safeclip_guardrail.serve import create_app
from safeclip_guardrail.testing import PlantedEncoder


@pytest.fixture(scope="module")
def client() -> TestClient:
    with TestClient(create_app(SafeCLIPGuard(PlantedEncoder()), api_keys=["k"])) as c:
        c.headers["authorization"] = "Bearer k"
        yield c


@pytest.mark.parametrize(("value", "said"), [
    (5, "got a number"),
    (None, "got null"),
    ({"type": "text", "text": "hi"}, "got an object"),
    ([1, 2], "item 0 is a number"),
    (["a", {"type": "text", "text": "b"}], "item 0 is a string in a list of parts"),
    ([{"text": "no type"}], "item 0 is an object"),
])
def test_a_wrong_input_gets_one_message_saying_what_input_may_be(client, value, said):
    r = client.post("/v1/moderations", json={"input": value})
    assert r.status_code == 400
    error = r.json()["error"]
    message = error["message"]
    assert "must be a string, a list of strings, or a list of parts" in message
    assert said in message
    assert "input.str" not in message and "list[ContentPart]" not in message  # no union noise
    assert "(1 problem(s))" in message and error["param"] == "input"


def test_valid_inputs_still_pass(client):
    for value in ("hi", ["a", "b"], [{"type": "text", "text": "hi"}]):
        r = client.post("/v1/moderations", json={"input": value})
        assert r.status_code == 200, r.text


def test_moderations_says_it_judges_images_only(client):
    r = client.post("/v1/moderations", json={"input": "I will hurt you"})
    result = r.json()["results"][0]
    assert result["flagged"] is False  # by design: this guard judges images
    assert all(types == [] for types in result["category_applied_input_types"].values())
    route = client.get("/openapi.json").json()["paths"]["/v1/moderations"]["post"]
    assert "images only" in route["summary"].lower()
    assert "never judged" in route["description"] and "docs/serve.md" in route["description"]
