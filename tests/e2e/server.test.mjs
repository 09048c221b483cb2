// dsv3 serve end to end, through the official `openai` client, on loopback with the demo model.
// Run by CTest (server_e2e) with DSV3_BINARY (the built dsv3) and DSV3_DEPS (the npm packages).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';

const require = createRequire(`${process.env.DSV3_DEPS}/package.json`);
const OpenAIModule = require('openai');
const OpenAI = OpenAIModule.default ?? OpenAIModule;

// Starts `dsv3 serve` on a free loopback port; resolves once it listens.
function startServer(extraArgs = []) {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.env.DSV3_BINARY, ['serve', '--port', '0', '--test-hooks', ...extraArgs],
                       { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const timer = setTimeout(() => reject(new Error(`server did not start: ${log}`)), 60000);
    proc.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ proc, url: `http://127.0.0.1:${m[1]}` });
      }
    });
    proc.on('exit', (code) => reject(new Error(`server exited with ${code}: ${log}`)));
  });
}

function stopServer(server) {
  return new Promise((resolve) => {
    server.proc.removeAllListeners('exit');
    server.proc.on('exit', (code) => resolve(code));
    server.proc.kill('SIGTERM');
  });
}

let server;
let client;
before(async () => {
  server = await startServer();
  client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: 'unused', maxRetries: 0 });
});
after(async () => {
  assert.equal(await stopServer(server), 0);
});

async function post(path, body, headers = {}) {
  const res = await fetch(`${server.url}${path}`, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, body: await res.json() };
}

async function kvPagesUsed() {
  const text = await (await fetch(`${server.url}/metrics`)).text();
  return Number(text.match(/^dsv3_kv_cache_pages_used (\S+)$/m)[1]);
}

const messages = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Name three colours.' }];

test('models lists the demo model as random weights', async () => {
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].random_weights, true);
});

test('streaming and non-streaming agree at temperature 0, with right usage', async () => {
  const full = await client.chat.completions.create({ model: 'demo', messages, max_tokens: 12, temperature: 0 });
  let streamed = '';
  let usage = null;
  const stream = await client.chat.completions.create({
    model: 'demo', messages, max_tokens: 12, temperature: 0, stream: true, stream_options: { include_usage: true },
  });
  for await (const chunk of stream) {
    if (chunk.choices.length) streamed += chunk.choices[0].delta.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(streamed, full.choices[0].message.content);
  const tokens = await post('/tokenize', { messages });
  assert.equal(full.usage.prompt_tokens, tokens.body.count);
  assert.equal(full.usage.completion_tokens, 12);
  assert.equal(full.usage.total_tokens, tokens.body.count + 12);
  assert.deepEqual(usage.completion_tokens, 12);
  assert.equal(full.choices[0].finish_reason, 'length');
});

test('a repeated prompt is served from the prefix cache', async () => {
  const long = [{ role: 'user', content: 'word '.repeat(200) }];
  await client.chat.completions.create({ model: 'demo', messages: long, max_tokens: 2, temperature: 0 });
  const again = await client.chat.completions.create({ model: 'demo', messages: long, max_tokens: 2, temperature: 0 });
  assert.ok(again.usage.prompt_tokens_details.cached_tokens >= 64);
});

test('seeded sampling repeats', async () => {
  const ask = () => client.completions.create({ model: 'demo', prompt: 'Once upon a time', max_tokens: 10,
                                                 temperature: 1, seed: 1234 });
  const [a, b] = [await ask(), await ask()];
  assert.equal(a.choices[0].text, b.choices[0].text);
});

test('completions take token ids, lists of prompts, echo and logprobs', async () => {
  const r = await client.completions.create({ model: 'demo', prompt: ['Hello', 'World'], max_tokens: 3,
                                              temperature: 0, echo: true, logprobs: 2 });
  assert.equal(r.choices.length, 2);
  assert.ok(r.choices[0].text.startsWith('Hello'));
  assert.equal(r.choices[1].logprobs.tokens.length, 3);
  const ids = await client.completions.create({ model: 'demo', prompt: [1, 2, 3], max_tokens: 2, temperature: 0 });
  assert.equal(ids.usage.prompt_tokens, 3);
});

test('tool calls come back as tool_calls, streamed or not', async () => {
  const text = '<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>get_weather\n```json\n' +
               '{"city": "Paris"}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>';
  const ids = (await post('/tokenize', { prompt: text })).body.tokens;
  const request = { model: 'demo', messages: [{ role: 'user', content: 'Weather in Paris?' }], max_tokens: ids.length + 4,
                    forced_tokens: [...ids, 1],
                    tools: [{ type: 'function', function: { name: 'get_weather', parameters: { type: 'object' } } }] };
  const r = await client.chat.completions.create(request);
  assert.equal(r.choices[0].finish_reason, 'tool_calls');
  assert.equal(r.choices[0].message.tool_calls[0].function.name, 'get_weather');
  assert.deepEqual(JSON.parse(r.choices[0].message.tool_calls[0].function.arguments), { city: 'Paris' });
  let call = null;
  let finish = null;
  for await (const chunk of await client.chat.completions.create({ ...request, stream: true })) {
    if (chunk.choices[0]?.delta?.tool_calls) call = chunk.choices[0].delta.tool_calls[0];
    if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.equal(call.function.name, 'get_weather');
  assert.equal(finish, 'tool_calls');
});

test('reasoning comes back as reasoning_content', async () => {
  const ids = (await post('/tokenize', { prompt: '<think>\nLet me see.\n</think>\n\nBlue.' })).body.tokens;
  const request = { model: 'demo', messages: [{ role: 'user', content: 'Sky?' }], max_tokens: ids.length + 2,
                    forced_tokens: [...ids, 1] };
  const r = await client.chat.completions.create(request);
  assert.equal(r.choices[0].message.reasoning_content, '\nLet me see.\n');
  assert.equal(r.choices[0].message.content, '\n\nBlue.');
  let reasoning = '';
  for await (const chunk of await client.chat.completions.create({ ...request, stream: true }))
    reasoning += chunk.choices[0]?.delta?.reasoning_content ?? '';
  assert.equal(reasoning, '\nLet me see.\n');
});

test('bad requests get OpenAI-style errors with the right status', async () => {
  const cases = [
    ['{"messages": [', 400],
    [{ messages }, 200],
    [{ messages, temperature: 5 }, 400],
    [{ messages: 'hello' }, 400],
    [{ messages: [{ role: 'wizard', content: 'x' }] }, 400],
    [{ messages, max_tokens: 0 }, 400],
    [{ messages, max_tokens: 1e9 }, 400],
    [{ messages, top_p: 'high' }, 400],
  ];
  for (const [body, status] of cases) {
    const r = await post('/v1/chat/completions', typeof body === 'string' ? body : { max_tokens: 1, ...body });
    assert.equal(r.status, status, JSON.stringify(body));
    if (status !== 200) assert.equal(typeof r.body.error.message, 'string');
  }
  const tooLong = await post('/v1/completions', { prompt: 'word '.repeat(20000), max_tokens: 1 });
  assert.equal(tooLong.status, 400);
  await assert.rejects(client.chat.completions.create({ model: 'demo', messages, temperature: -1 }),
                       (e) => e.status === 400);
});

test('64 concurrent streams all finish', async () => {
  const runs = Array.from({ length: 64 }, async (_, i) => {
    let finish = null;
    const stream = await client.chat.completions.create({
      model: 'demo', messages: [{ role: 'user', content: `Request ${i}` }], max_tokens: 4, temperature: 0, stream: true });
    for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
    return finish;
  });
  const finishes = await Promise.all(runs);
  assert.deepEqual(finishes, Array(64).fill('length'));
});

test('an aborted stream frees its pages', async () => {
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    { model: 'demo', messages, max_tokens: 2000, temperature: 0, stream: true }, { signal: controller.signal });
  let chunks = 0;
  try {
    for await (const chunk of stream) {
      if (++chunks === 3) controller.abort();
    }
  } catch (e) {
    assert.ok(controller.signal.aborted);
  }
  for (let i = 0; i < 100 && await kvPagesUsed() !== 0; ++i) await new Promise((r) => setTimeout(r, 100));
  assert.equal(await kvPagesUsed(), 0);
});

test('an API key is required when set, and large bodies get 413', async () => {
  const guarded = await startServer(['--api-key', 'sekret', '--max-body-bytes', '1000']);
  try {
    const denied = await fetch(`${guarded.url}/v1/models`);
    assert.equal(denied.status, 401);
    const keyed = new OpenAI({ baseURL: `${guarded.url}/v1`, apiKey: 'sekret', maxRetries: 0 });
    assert.equal((await keyed.models.list()).data.length, 1);
    const big = await fetch(`${guarded.url}/v1/completions`, {
      method: 'POST', headers: { Authorization: 'Bearer sekret', 'Content-Type': 'application/json' },
      body: JSON.stringify({ prompt: 'x'.repeat(5000) }) });
    assert.equal(big.status, 413);
  } finally {
    assert.equal(await stopServer(guarded), 0);
  }
});
