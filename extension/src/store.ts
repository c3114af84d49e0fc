// One place that holds the panel state; the status bar and the panel subscribe to it.

import { initialState, reduce, type Action, type PanelState } from './panelState';

export type Listener = (state: PanelState) => void;

export class Store {
  private current: PanelState;
  private readonly listeners = new Set<Listener>();

  constructor(state: PanelState = initialState) {
    this.current = state;
  }

  get state(): PanelState {
    return this.current;
  }

  dispatch(action: Action): void {
    const next = reduce(this.current, action);
    if (next === this.current) return;
    this.current = next;
    for (const l of this.listeners) l(next);
  }

  subscribe(listener: Listener): { dispose(): void } {
    this.listeners.add(listener);
    return { dispose: () => this.listeners.delete(listener) };
  }
}
