import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import {
  EMBEDDED_SETTINGS,
  FIM_MODEL_PATTERNS,
  PRESETS,
  endpointModelSettings,
  listModels,
  modelsUrl,
  noModelsMessage,
  presetFor,
  promptChoice,
  settingWrites,
  unreachableMessage,
} from '../src/models';
import { FIM_TEMPLATES } from '../src/protocol';

const KEY = 'sk-local-0123456789';

/** What Ollama's `GET /v1/models` answers (Ollama 0.5+). */
const OLLAMA_MODELS = {
  object: 'list',
  data: [
    { id: 'qwen2.5-coder:1.5b-base', object: 'model', created: 1733000000, owned_by: 'library' },
    { id: 'qwen2.5-coder:7b', object: 'model', created: 1733000000, owned_by: 'library' },
    { id: 'nomic-embed-text:latest', object: 'model', created: 1733000000, owned_by: 'library' },
  ],
};

/** What `vllm serve Qwen/Qwen2.5-Coder-1.5B --api-key KEY` answers. */
const VLLM_MODELS = {
  object: 'list',
  data: [
    {
      id: 'Qwen/Qwen2.5-Coder-1.5B',
      object: 'model',
      created: 1733000000,
      owned_by: 'vllm',
      root: 'Qwen/Qwen2.5-Coder-1.5B',
      parent: null,
      max_model_len: 32768,
      permission: [],
    },
  ],
};

/** What llama.cpp's `llama-server -m qwen2.5-coder-1.5b-q8_0.gguf` answers. */
const LLAMACPP_MODELS = {
  models: [{ name: 'qwen2.5-coder-1.5b-q8_0.gguf', model: 'qwen2.5-coder-1.5b-q8_0.gguf' }],
  object: 'list',
  data: [
    { id: 'qwen2.5-coder-1.5b-q8_0.gguf', object: 'model', created: 1733000000, owned_by: 'llamacpp', meta: { n_ctx_train: 32768, n_vocab: 151936 } },
  ],
};

interface Seen {
  url: string | undefined;
  authorization: string | undefined;
}

/** A real HTTP server on 127.0.0.1 (an ephemeral port) that answers with `handler`. */
async function serve(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<{ endpoint: string; seen: Seen[]; close: () => Promise<void> }> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url, authorization: req.headers.authorization });
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const close = async (): Promise<void> => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };
  servers.push(close);
  return { endpoint: `http://127.0.0.1:${port}/v1`, seen, close };
}
const servers: (() => Promise<void>)[] = [];
after(async () => {
  await Promise.all(servers.map((close) => close().catch(() => undefined)));
});

const json = (status: number, body: unknown) => (_req: http.IncomingMessage, res: http.ServerResponse) => {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
};

/** Answers `/v1/models` only, like every OpenAI-compatible server; anything else is a 404. */
const modelsAt = (body: unknown) => (req: http.IncomingMessage, res: http.ServerResponse) =>
  req.url === '/v1/models' ? json(200, body)(req, res) : json(404, { error: 'not found' })(req, res);

describe('listModels against real servers', () => {
  it("lists an Ollama-like server's models, in its order, without a key when none is set", async () => {
    const s = await serve(modelsAt(OLLAMA_MODELS));
    const r = await listModels(s.endpoint + '/');
    assert.ok(r.ok, JSON.stringify(r));
    assert.equal(r.endpoint, s.endpoint, 'trailing slash dropped');
    assert.deepEqual(
      r.models.map((m) => m.id),
      ['qwen2.5-coder:1.5b-base', 'qwen2.5-coder:7b', 'nomic-embed-text:latest'],
    );
    assert.equal(r.models[0]!.ownedBy, 'library');
    assert.deepEqual(s.seen, [{ url: '/v1/models', authorization: undefined }]);
  });

  it('sends the API key as a bearer token, and reads the context length vLLM and llama.cpp give', async () => {
    const vllm = await serve((req, res) =>
      req.headers.authorization === `Bearer ${KEY}` ? modelsAt(VLLM_MODELS)(req, res) : json(401, { error: 'Unauthorized' })(req, res),
    );
    const r = await listModels(vllm.endpoint, { apiKey: KEY });
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.models, [{ id: 'Qwen/Qwen2.5-Coder-1.5B', ownedBy: 'vllm', contextLength: 32768 }]);

    const llama = await serve(modelsAt(LLAMACPP_MODELS));
    const l = await listModels(llama.endpoint);
    assert.ok(l.ok, JSON.stringify(l));
    assert.deepEqual(l.models, [{ id: 'qwen2.5-coder-1.5b-q8_0.gguf', ownedBy: 'llamacpp', contextLength: 32768 }]);
  });

  it('says to set the API key on 401, and never repeats the key', async () => {
    const s = await serve(json(401, { error: { message: 'invalid api key' } }));
    const r = await listModels(s.endpoint, { apiKey: 'wrong-key-xyz' });
    assert.ok(!r.ok);
    assert.equal(r.failure, 'unauthorized');
    assert.equal(r.status, 401);
    assert.match(r.message, /refused the request \(HTTP 401\).*Collab: Set API Key/);
    assert.ok(!r.message.includes('wrong-key-xyz'));
  });

  it('says nothing answers when the connection is refused', async () => {
    const s = await serve(json(200, {}));
    await s.close(); // the port is free again: connections to it are refused
    const r = await listModels(s.endpoint);
    assert.ok(!r.ok);
    assert.equal(r.failure, 'unreachable');
    assert.equal(r.message, `nothing answers at ${s.endpoint}; is the server running, and is the URL right?`);
  });

  it('says when an answer is not JSON (an HTML page at the URL)', async () => {
    const s = await serve((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><body>LM Studio</body></html>');
    });
    const r = await listModels(s.endpoint);
    assert.ok(!r.ok);
    assert.equal(r.failure, 'notJson');
    assert.match(r.message, /\/v1\/models did not answer with JSON \(text\/html\).*ending in \/v1/);
  });

  it('says when JSON has no "data" list, and when the path is wrong (a base URL without /v1)', async () => {
    const s = await serve(modelsAt({ models: ['a'] }));
    const r = await listModels(s.endpoint);
    assert.ok(!r.ok);
    assert.equal(r.failure, 'notList');
    assert.match(r.message, /without a "data" list/);

    const noV1 = s.endpoint.replace(/\/v1$/, '');
    const w = await listModels(noV1);
    assert.ok(!w.ok);
    assert.equal(w.failure, 'http');
    assert.equal(w.status, 404);
    assert.match(w.message, /answered HTTP 404; the base URL usually ends in \/v1/);
  });

  it('gives up after the timeout on a server that never answers', async () => {
    const s = await serve(() => undefined); // accepts, never responds
    const started = Date.now();
    const r = await listModels(s.endpoint, { timeoutMs: 200 });
    assert.ok(!r.ok);
    assert.equal(r.failure, 'timeout');
    assert.match(r.message, /did not answer within 0\.2 s/);
    assert.ok(Date.now() - started < 2000, 'returned soon after the timeout');
  });

  it('refuses a URL that is not http(s) without a request', async () => {
    const r = await listModels('127.0.0.1:11434/v1');
    assert.ok(!r.ok);
    assert.equal(r.failure, 'badUrl');
    assert.match(r.message, /not an http\(s\) base URL/);
  });
});

describe('presets', () => {
  it("are the local servers' default addresses", () => {
    assert.deepEqual(
      Object.fromEntries(PRESETS.map((p) => [p.id, p.endpoint])),
      {
        ollama: 'http://127.0.0.1:11434/v1',
        'llama.cpp': 'http://127.0.0.1:8080/v1',
        vllm: 'http://127.0.0.1:8000/v1',
        lmstudio: 'http://127.0.0.1:1234/v1',
      },
    );
    assert.equal(modelsUrl('http://127.0.0.1:11434/v1/'), 'http://127.0.0.1:11434/v1/models');
  });

  it('are recognised from the endpoint, localhost or 127.0.0.1, but not on another host', () => {
    assert.equal(presetFor('http://localhost:11434/v1')?.id, 'ollama');
    assert.equal(presetFor('http://127.0.0.1:1234/v1/')?.id, 'lmstudio');
    assert.equal(presetFor('http://gpu-box:8000/v1'), undefined);
    assert.equal(presetFor('not a url'), undefined);
  });

  it("say how to start each server when nothing answers at its address", () => {
    assert.equal(unreachableMessage('http://127.0.0.1:11434/v1', 'ECONNREFUSED'), 'nothing answers at http://127.0.0.1:11434/v1; start Ollama with `ollama serve`');
    assert.match(unreachableMessage('http://127.0.0.1:8080/v1'), /; start it with `llama-server -m MODEL\.gguf --port 8080`$/);
    assert.match(unreachableMessage('http://127.0.0.1:8000/v1'), /; start it with `vllm serve /);
    assert.match(unreachableMessage('http://127.0.0.1:1234/v1'), /LM Studio's server/);
    assert.equal(unreachableMessage('http://nowhere.invalid/v1', 'ENOTFOUND'), 'no host nowhere.invalid is known; is the server running, and is the URL right?');
    assert.match(noModelsMessage('http://127.0.0.1:11434/v1'), /serves no models; pull one with `ollama pull /);
  });
});

describe('promptChoice', () => {
  const cases: [string, string][] = [
    // Ollama tags: the untagged builds of these families are instruct models.
    ['qwen2.5-coder:1.5b-base', 'qwen2.5-coder'],
    ['qwen2.5-coder:7b', 'none'],
    ['qwen2.5-coder:latest', 'none'],
    ['deepseek-coder:6.7b-base', 'deepseek-coder'],
    ['deepseek-coder:6.7b', 'none'],
    ['codellama:7b-code', 'codellama'],
    ['codellama:7b', 'none'],
    ['starcoder2:3b', 'starcoder2'],
    ['starcoder2:15b-instruct', 'none'],
    ['codeqwen:7b', 'none'],
    ['codeqwen:7b-code', 'starcoder2'],
    // Hub ids (vLLM) and GGUF files (llama.cpp, LM Studio).
    ['Qwen/Qwen2.5-Coder-1.5B', 'qwen2.5-coder'],
    ['Qwen/Qwen2.5-Coder-7B-Instruct', 'none'],
    ['deepseek-ai/deepseek-coder-1.3b-base', 'deepseek-coder'],
    ['deepseek-ai/deepseek-coder-6.7b-instruct', 'none'],
    ['bigcode/starcoder2-3b', 'starcoder2'],
    ['bigcode/starcoder2-15b-instruct-v0.1', 'none'],
    ['codellama/CodeLlama-7b-hf', 'codellama'],
    ['codellama/CodeLlama-7b-Instruct-hf', 'none'],
    ['codellama/CodeLlama-7b-Python-hf', 'none'],
    ['qwen2.5-coder-1.5b-q8_0.gguf', 'qwen2.5-coder'],
    ['/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf', 'none'],
    ['C:\\models\\qwen2.5-coder-1.5b-q8_0.gguf', 'qwen2.5-coder'],
    ['qwen2.5-coder-1.5b-instruct', 'none'],
    // No FIM template known: chat.
    ['llama3.2:3b', 'none'],
    ['gpt-4o-mini', 'none'],
    ['smollm2-135m-instruct', 'none'],
  ];
  for (const [model, template] of cases) {
    it(`${model} -> ${template}`, () => {
      const c = promptChoice(model);
      assert.equal(c.fimTemplate, template);
      assert.equal(c.style, template === 'none' ? 'chat' : 'fim');
      assert.equal(c.embedding, false);
    });
  }

  it('marks embedding models, which cannot complete code', () => {
    for (const m of ['nomic-embed-text:latest', 'text-embedding-nomic-embed-text-v1.5', 'BAAI/bge-small-en-v1.5', 'all-minilm:latest']) {
      const c = promptChoice(m);
      assert.equal(c.embedding, true, m);
      assert.equal(c.fimTemplate, 'none');
    }
  });

  it("uses the server's templates and name patterns (server/backends/fim.py)", () => {
    const source = fs.readFileSync(path.join(__dirname, '..', '..', 'server', 'backends', 'fim.py'), 'utf8');
    const server = [...source.matchAll(/name="([^"]+)",\s*format=[\s\S]*?model_pattern=r"([^"]+)"/g)].map((m) => [m[1], m[2]]);
    assert.equal(server.length, 4, 'found the four templates in fim.py');
    assert.deepEqual(
      FIM_MODEL_PATTERNS.map((f) => [f.template, f.pattern.source]),
      server,
    );
    for (const f of FIM_MODEL_PATTERNS) assert.ok((FIM_TEMPLATES as readonly string[]).includes(f.template));
  });
});

describe('writing the choice', () => {
  const embedded = { backend: 'llamacpp' as const, endpointUrl: '', model: 'smollm2-135m-instruct', fimTemplate: 'auto' as const };

  it('picks the FIM template for a base model at an endpoint', () => {
    assert.deepEqual(endpointModelSettings('http://127.0.0.1:11434/v1/', 'qwen2.5-coder:1.5b-base'), {
      backend: 'openai',
      endpointUrl: 'http://127.0.0.1:11434/v1',
      model: 'qwen2.5-coder:1.5b-base',
      fimTemplate: 'qwen2.5-coder',
    });
  });

  it('from the embedded model to an endpoint: the endpoint first, then the backend, then the model', () => {
    const writes = settingWrites(embedded, endpointModelSettings('http://127.0.0.1:11434/v1', 'qwen2.5-coder:1.5b-base'));
    assert.deepEqual(writes, [
      ['endpointUrl', 'http://127.0.0.1:11434/v1'],
      ['backend', 'openai'],
      ['model', 'qwen2.5-coder:1.5b-base'],
      ['fimTemplate', 'qwen2.5-coder'],
    ]);
  });

  it('from an endpoint back to the embedded model: the model first, the backend last, the endpoint kept', () => {
    const current = { backend: 'openai' as const, endpointUrl: 'http://127.0.0.1:11434/v1', model: 'qwen2.5-coder:1.5b-base', fimTemplate: 'qwen2.5-coder' as const };
    assert.deepEqual(settingWrites(current, EMBEDDED_SETTINGS), [
      ['model', 'smollm2-135m-instruct'],
      ['fimTemplate', 'auto'],
      ['backend', 'llamacpp'],
    ]);
  });

  it('writes only what changes', () => {
    assert.deepEqual(settingWrites(embedded, EMBEDDED_SETTINGS), []);
    const current = { backend: 'openai' as const, endpointUrl: 'http://127.0.0.1:11434/v1', model: 'qwen2.5-coder:7b', fimTemplate: 'none' as const };
    assert.deepEqual(settingWrites(current, endpointModelSettings('http://127.0.0.1:11434/v1', 'qwen2.5-coder:1.5b-base')), [
      ['model', 'qwen2.5-coder:1.5b-base'],
      ['fimTemplate', 'qwen2.5-coder'],
    ]);
  });
});
