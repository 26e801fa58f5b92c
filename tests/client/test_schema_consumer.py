"""A consumer in another process reads a surface with nothing of ours but the JSON Schema.

The child process imports aiokafka and the standard library only (it checks that
``streamer`` was never imported), validates the message against the schema from
``streamer.sinks.codec.surface_json_schema`` with a small hand-written validator
(``jsonschema`` is not a dependency) and evaluates the first SVI slice at the money
from the documented formula.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from streamer.client import Surface
from streamer.sinks.codec import SCHEMA_HEADER, encode_surface, surface_json_schema
from streamer.types import Dynamics
from tests.client.factory import EXPIRIES_MS, make_surface
from tests.client.test_subscriber import create_topic

pytestmark = pytest.mark.integration

CHILD = r'''
import asyncio, json, math, sys
from aiokafka import AIOKafkaConsumer

TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}

def is_type(value, name):
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int)
    if name == "number":
        return isinstance(value, (int, float))
    return isinstance(value, TYPES[name])

def check(node, value, root, path, errors):
    if "$ref" in node:
        return check(root["$defs"][node["$ref"].rsplit("/", 1)[-1]], value, root, path, errors)
    if "anyOf" in node:
        if all(check(sub, value, root, path, []) for sub in node["anyOf"]):
            errors.append(path + ": matches no alternative")
        return errors
    if "enum" in node and value not in node["enum"]:
        errors.append(path + ": not one of " + repr(node["enum"]))
    types = node.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        if not any(is_type(value, t) for t in types):
            errors.append(path + ": not " + "/".join(types))
            return errors
    if isinstance(value, dict):
        errors.extend(path + "." + r + ": required" for r in node.get("required", ())
                      if r not in value)
        props, extra = node.get("properties", {}), node.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key, extra if isinstance(extra, dict) else None)
            if sub is not None:
                check(sub, item, root, path + "." + key, errors)
    if isinstance(value, list) and "items" in node:
        for i, item in enumerate(value):
            check(node["items"], item, root, path + "[" + str(i) + "]", errors)
    return errors

async def consume(bootstrap, topic):
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    try:
        return await asyncio.wait_for(consumer.getone(), 30)
    finally:
        await consumer.stop()

bootstrap, topic, schema_path = sys.argv[1:4]
schema = json.loads(open(schema_path).read())
record = asyncio.run(consume(bootstrap, topic))
doc = json.loads(record.value)
first = doc["slices"][0]
p, t = first["params"], first["t"]
atm_w = p["a"] + p["b"] * (p["rho"] * -p["m"] + math.sqrt(p["m"] ** 2 + p["sigma"] ** 2))
bad = dict(doc, seq="42", model="black", slices=[dict(first, n_quotes=1.5)])
del bad["spot"]
print(json.dumps({
    "key": record.key.decode(), "headers": [[k, v.decode()] for k, v in record.headers],
    "seq": doc["seq"], "model": doc["model"], "atm_vol": math.sqrt(atm_w / t),
    "nan_as_null": doc["slices"][1]["rr25"], "regime": doc["dynamics"]["regime"],
    "errors": check(schema, doc, schema, "$", []),
    "bad_errors": sorted(check(schema, bad, schema, "$", [])),
    "streamer_imported": any(m.split(".")[0] == "streamer" for m in sys.modules),
}))
'''


def test_a_separate_process_decodes_with_the_json_schema_alone(
        kafka_bootstrap: str, unique_topic: Callable[[str], str], tmp_path: Path) -> None:
    topic = unique_topic("surface")
    plain = make_surface().slices
    update = make_surface(
        seq=12, dynamics=Dynamics(ssr=1.2, spot_vol_beta=math.nan, r2=0.4, n_obs=50,
                                  regime="sticky_moneyness"),
        slices=[plain[0], *(msgspec.structs.replace(s, rr25=math.nan) for s in plain[1:])])

    async def publish() -> None:
        await create_topic(kafka_bootstrap, topic, partitions=1)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, enable_idempotence=False)
        await producer.start()
        try:
            await producer.send_and_wait(topic, key=update.key.encode(),
                                         value=encode_surface(update), headers=[SCHEMA_HEADER])
        finally:
            await producer.stop()

    asyncio.run(publish())
    schema_path = tmp_path / "vol.surface.v1.schema.json"
    schema_path.write_text(json.dumps(surface_json_schema()))
    child = subprocess.run([sys.executable, "-c", CHILD, kafka_bootstrap, topic, str(schema_path)],
                           capture_output=True, text=True, timeout=60, check=False)
    assert child.returncode == 0, child.stderr
    out = json.loads(child.stdout)
    assert out["errors"] == []
    assert out["bad_errors"] == ["$.model: not one of ['heston', 'sabr', 'ssvi', 'svi']",
                                 "$.seq: not integer", "$.slices[0].n_quotes: not integer",
                                 "$.spot: required"]
    assert (out["key"], out["seq"], out["model"]) == ("deribit:BTC", 12, "svi")
    assert out["headers"] == [["schema", "vol.surface.v1"]]
    assert (out["nan_as_null"], out["regime"], out["streamer_imported"]) == (
        None, "sticky_moneyness", False)
    ours = Surface(update).slice(EXPIRIES_MS[0]).vol_k(0.0)
    assert out["atm_vol"] == pytest.approx(float(ours), rel=1e-14)
