// Round trip through a TypeScript client: types generated from openapi/openapi.json by
// openapi-typescript, requests by openapi-fetch. ci/openapi.sh type-checks it with
// `tsc --strict` and runs it with node:
//
//   CACHEGATE_TOKEN=... node client_roundtrip.js BASE_URL OPEN_URL
//
// OPEN_URL is a cachegate with no token configured (protected mode: loopback clients need
// none). Every answer is asserted, so a document that drifts from the service fails CI.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import createClient from "openapi-fetch";
import type { components, paths } from "./cachegate.js";

type ErrorBody = components["schemas"]["ErrorBody"];

const TTL = 60;

function codeOf(error: ErrorBody | undefined): string | undefined {
  return error?.error.code;
}

async function roundTrip(baseUrl: string, token: string): Promise<void> {
  const client = createClient<paths>({
    baseUrl,
    headers: { Authorization: `Bearer ${token}` },
  });
  const run = randomUUID();
  // A slash, a space, glob characters and non-ASCII text: the client must encode them.
  const first = `roundtrip-${run}:user/1 [a]?é`;
  const second = `roundtrip-${run}:user/2`;
  const value = { name: "Ada", tags: [1, 2.5, null], nested: { ok: true } };

  const put = await client.PUT("/v1/cache/{key}", {
    params: { path: { key: first }, query: { ttl: TTL } },
    body: value,
  });
  assert.equal(put.response.status, 204);

  const got = await client.GET("/v1/cache/{key}", { params: { path: { key: first } } });
  assert.equal(got.response.status, 200);
  assert.deepEqual(got.data, value);
  assert.equal(got.response.headers.get("x-cache"), "HIT");

  // JSON null is a value like any other.
  const nullPut = await client.PUT("/v1/cache/{key}", {
    params: { path: { key: second }, query: { ttl: TTL } },
    body: null,
  });
  assert.equal(nullPut.response.status, 204);
  const nullGot = await client.GET("/v1/cache/{key}", { params: { path: { key: second } } });
  assert.equal(nullGot.response.status, 200);
  assert.equal(nullGot.data, null);

  const ttl = await client.GET("/v1/cache/{key}/ttl", { params: { path: { key: first } } });
  const seconds = ttl.data?.ttl;
  assert.ok(typeof seconds === "number" && seconds > 0 && seconds <= TTL, `ttl ${seconds}`);

  const batch = await client.POST("/v1/batch/get", {
    body: { keys: [first, second, `roundtrip-${run}:absent`] },
  });
  assert.equal(batch.response.status, 200);
  assert.deepEqual(batch.data?.found, { [first]: value, [second]: null });
  assert.deepEqual(batch.data?.missing, [`roundtrip-${run}:absent`]);

  const deleted = await client.POST("/v1/batch/delete", { body: { keys: [first, second] } });
  assert.equal(deleted.data?.deleted, 2);

  const miss = await client.GET("/v1/cache/{key}", { params: { path: { key: first } } });
  assert.equal(miss.response.status, 404);
  assert.equal(codeOf(miss.error), "key_not_found");

  const anonymous = createClient<paths>({ baseUrl });
  const refused = await anonymous.GET("/v1/cache/{key}", { params: { path: { key: first } } });
  assert.equal(refused.response.status, 401);
  assert.equal(codeOf(refused.error), "unauthorized");
  console.log("TypeScript client round trip: put, get, null, ttl, batch get, delete: ok");
}

async function openRoundTrip(openUrl: string): Promise<void> {
  const client = createClient<paths>({ baseUrl: openUrl });
  const key = `roundtrip-${randomUUID()}:open`;
  const put = await client.PUT("/v1/cache/{key}", {
    params: { path: { key }, query: { ttl: TTL } },
    body: [1],
  });
  assert.equal(put.response.status, 204);
  const got = await client.GET("/v1/cache/{key}", { params: { path: { key } } });
  assert.deepEqual(got.data, [1]);
  const deleted = await client.DELETE("/v1/cache/{key}", { params: { path: { key } } });
  assert.equal(deleted.response.status, 204);
  console.log("TypeScript client without a token, in protected mode: put, get, delete: ok");
}

const [baseUrl, openUrl] = process.argv.slice(2);
const token = process.env.CACHEGATE_TOKEN;
if (baseUrl === undefined || openUrl === undefined || !token) {
  console.error("usage: CACHEGATE_TOKEN=<token> node client_roundtrip.js BASE_URL OPEN_URL");
  process.exit(2);
}
await roundTrip(baseUrl, token);
await openRoundTrip(openUrl);
