// Runs inside the panel's webview: swaps in the HTML the extension renders and reports clicks.

interface VsCodeApi {
  postMessage(message: unknown): void;
}

declare function acquireVsCodeApi(): VsCodeApi;

const vscodeApi = acquireVsCodeApi();
const root = document.getElementById('root');

window.addEventListener('message', (event: MessageEvent<{ type?: string; html?: string }>) => {
  const data = event.data;
  if (root && data.type === 'render' && typeof data.html === 'string') {
    // Keep the scroll position of the panel across re-renders while a run streams in.
    const y = window.scrollY;
    root.innerHTML = data.html;
    window.scrollTo(0, y);
  }
});

document.addEventListener('click', (event) => {
  const target = event.target instanceof Element ? event.target.closest<HTMLElement>('button[data-action]') : null;
  if (!target) return;
  event.preventDefault();
  vscodeApi.postMessage({ action: target.dataset.action, node: target.dataset.node });
});

vscodeApi.postMessage({ action: 'ready' });
