// A scripted OpenAI-compatible model on 127.0.0.1 for the verdict e2e test: real sockets and
// real HTTP, answered the way `collab.backend: "openai"` reads them (`/v1/models`,
// `/v1/chat/completions`, streamed or not, n choices).
//
// Why a script and not the embedded SmolLM2-135M: the verdict checks need a known-correct body
// at a site with examples or tests, and the 135M model does not write one reliably (issue 12's
// reproductions: `return 1.0` for a temperature conversion). Everything after the model's reply
// is real: the language server, its analyzers, the sandbox running the doctests and pytest, the
// extension and its panel in code-server. The same approach as the server's own test
// (tests/test_lsp_verdicts.py with tests/fixtures/stub_endpoint.py).

import * as http from 'node:http';
import type { AddressInfo } from 'node:net';

/** The server's cursor marker in prompts (collabcoder.analyzers.protocol.prompts.CURSOR). */
export const CURSOR = '<CURSOR>';

export interface ScriptedModel {
  /** Base URL ending in /v1, for `collab.endpointUrl`. */
  url: string;
  /** The function each chat request was about, in order (for the test's log). */
  asked: string[];
  close(): Promise<void>;
}

interface ChatBody {
  messages?: { role: string; content: string }[];
  stream?: boolean;
  n?: number;
}

/**
 * The reply to a chat request: the `def` line around the cursor restated with the scripted body,
 * in a fenced block, as an instruct model answers the server's prompt; an empty block for a
 * function the script does not know. `name` is that function's.
 */
export function replyFor(body: ChatBody, bodies: Readonly<Record<string, string>>): { name: string; text: string } {
  const prompt = [...(body.messages ?? [])].reverse().find((m) => m.role === 'user' && m.content.includes(CURSOR))?.content ?? '';
  const before = prompt.slice(0, Math.max(0, prompt.indexOf(CURSOR)));
  const at = before.lastIndexOf('def ');
  const head = at >= 0 ? before.slice(at).split('\n')[0]! : '';
  const name = /^def (\w+)\(/.exec(head)?.[1] ?? '';
  const answer = bodies[name];
  return { name, text: answer === undefined ? '```python\n```' : `\`\`\`python\n${head}\n    ${answer}\n\`\`\`` };
}

export async function startScriptedModel(model: string, bodies: Readonly<Record<string, string>>): Promise<ScriptedModel> {
  const asked: string[] = [];
  const json = (res: http.ServerResponse, status: number, data: unknown): void => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(data));
  };
  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (d: string) => (raw += d));
    req.on('end', () => {
      if (req.method === 'GET' && req.url?.endsWith('/models')) {
        json(res, 200, { object: 'list', data: [{ id: model, object: 'model', created: 0, owned_by: 'e2e' }] });
        return;
      }
      if (req.method !== 'POST' || !req.url?.endsWith('/chat/completions')) {
        json(res, 404, { error: { message: `the scripted model serves /v1/chat/completions, not ${req.method} ${req.url}` } });
        return;
      }
      const body = JSON.parse(raw || '{}') as ChatBody;
      const { name, text } = replyFor(body, bodies);
      asked.push(name);
      const base = { id: `e2e-${asked.length}`, created: 0, model };
      if (body.stream) {
        res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
        const event = (data: unknown): boolean => res.write(`data: ${JSON.stringify(data)}\n\n`);
        event({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: { role: 'assistant', content: text }, finish_reason: null }] });
        event({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
        res.end('data: [DONE]\n\n');
        return;
      }
      const n = Math.max(1, body.n ?? 1);
      json(res, 200, {
        ...base,
        object: 'chat.completion',
        choices: Array.from({ length: n }, (_, index) => ({ index, message: { role: 'assistant', content: text }, finish_reason: 'stop' })),
        usage: { prompt_tokens: 1, completion_tokens: n, total_tokens: n + 1 },
      });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    asked,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
